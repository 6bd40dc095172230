/* main.c — the memfit command (placeholder until the CLI lands). */
#include "memfit.h"
int main(void) { return 0; }
