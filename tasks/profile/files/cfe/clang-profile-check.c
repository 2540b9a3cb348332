/* compatbuild test profile: proves the llvm stage's C compiler works. */
#include <stdio.h>

int main(void) {
    printf("clang 5.0.2 stand-in: C compiler works\n");
    return 0;
}
