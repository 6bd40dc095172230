/* omp_wait.h — programs built on memfit (the CLI, the benchmarks) start their OpenMP threads with a
 * passive wait policy, so a step does not stall when other processes share the cores. */
#ifndef MF_OMP_WAIT_H
#define MF_OMP_WAIT_H

/* Call first thing in main(), before any OpenMP, BLAS or oneDNN call. The OpenMP runtime reads its
 * wait policy from the environment once, when it is loaded, and offers no call to change it later:
 * so when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, this sets OMP_WAIT_POLICY=passive and
 * re-executes the program (/proc/self/exe) with the same arguments. Nothing happens
 * when either variable is set (OMP_WAIT_POLICY=active keeps spinning), under valgrind, or when the
 * re-execution fails (the program then simply goes on). */
void mf_omp_wait_passive(char **argv);

#endif
