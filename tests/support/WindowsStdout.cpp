// Windows only: a test program's stdout in binary mode, so a line ends in "\n" as everywhere
// else. In text mode the C runtime writes "\r\n", and ctest's test discovery
// (gtest_discover_tests, reading --gtest_list_tests) would take the '\r' into every test name.
#include <fcntl.h>
#include <io.h>

#include <cstdio>

namespace {

[[maybe_unused]] const int binary_stdout = _setmode(_fileno(stdout), _O_BINARY);

}  // namespace
