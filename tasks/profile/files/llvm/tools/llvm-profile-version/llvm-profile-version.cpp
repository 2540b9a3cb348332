// compatbuild test profile: the llvm stage's
// C++ compiler and linker work.
#include <iostream>
#include <string>

int main() {
  std::string line = std::string("LLVM ") + PROFILE_VERSION;
  line += " (compatbuild test profile stand-in), targets: ";
  line += PROFILE_TARGETS;
  std::cout << line << std::endl;
  return 0;
}
