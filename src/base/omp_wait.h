/* omp_wait.h — programs built on memfit (the CLI, the benchmarks) start their OpenMP threads with a short,
 * bounded spin before they sleep: a step's many small parallel regions do not pay a sleep and a wake-up each, and
 * a step does not stall for long when other processes share the cores. */
#ifndef MF_OMP_WAIT_H
#define MF_OMP_WAIT_H

/* Call first thing in main(), before any OpenMP, BLAS or oneDNN call. The OpenMP runtime reads its
 * wait policy from the environment once, when it is loaded, and offers no call to change it later:
 * so when none of OMP_WAIT_POLICY, GOMP_SPINCOUNT and KMP_BLOCKTIME is set, this sets GOMP_SPINCOUNT=3000
 * (GCC's libgomp: 3000 spins, about 0.1 ms, then sleep; its default spins 100 times longer) and
 * KMP_BLOCKTIME=0 (LLVM's libomp, clang's builds: sleep at once) and re-executes the program (/proc/self/exe)
 * with the same arguments. Nothing happens when any of them is set (OMP_WAIT_POLICY=passive sleeps at once,
 * active spins), under valgrind, or when the re-execution fails (the program then simply goes on).
 * Measured on 2 cores (Xeon with AMX, 2026-12-02, bench_steg batch 1, 2 threads): 2.18 images/s sleeping at
 * once, 3.2 with 3000 spins; with a busy-looping process on one of the cores 1.78 and 1.41; the MoCo step
 * 120 / 130 images/s, and 43 / 43 beside the busy process (the default spin: 32). */
void mf_omp_wait_bounded(char **argv);

#endif
