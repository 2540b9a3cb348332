// compatbuild test profile: proves the llvm stage's C++ compiler works.
#include <iostream>

int main() {
  std::cout << "lld 5.0.2 stand-in: C++ compiler works" << std::endl;
  return 0;
}
