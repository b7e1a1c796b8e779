// A main() for the fuzz targets when they are not built with libFuzzer: replays the files
// named on the command line, or, with none, a fixed series of pseudo-random inputs. ctest
// runs the latter so every target keeps building and surviving hostile bytes; `./run fuzz`
// builds the real coverage-guided fuzzers with clang.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  if (argc > 1) {
    for (int i = 1; i < argc; ++i) {
      std::ifstream in(argv[i], std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    }
    std::printf("replayed %d inputs\n", argc - 1);
    return 0;
  }
  std::mt19937_64 rng(20261122);
  int inputs = 3000;
  if (const char* n = std::getenv("SOTTO_FUZZ_SMOKE_INPUTS")) inputs = std::atoi(n);
  for (int i = 0; i < inputs; ++i) {
    std::vector<uint8_t> bytes(rng() % 600);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
  }
  std::printf("ran %d pseudo-random inputs\n", inputs);
  return 0;
}
