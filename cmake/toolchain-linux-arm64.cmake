# Linux arm64 (aarch64) with Debian's cross toolchain (crossbuild-essential-arm64) and the
# arm64 multiarch -dev packages; `./run cross arm64` installs them and uses this file.
#
#   cmake -S . -B build-arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-linux-arm64.cmake \
#     -DSOTTO_BUILD_RELAY=OFF -DSOTTO_RELAY_BINARY=$PWD/build/relay/sotto-relay
#
# Programs (protoc) come from the build machine, libraries and headers from the multiarch
# directories (/usr/lib/aarch64-linux-gnu). Tests run under qemu-user, which CMake and ctest
# put in front of every test program (CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(SOTTO_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${SOTTO_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${SOTTO_TRIPLE}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${SOTTO_TRIPLE})

# pkg-config reads only the arm64 .pc files, and first those in SOTTO_EXTRA_PKG_CONFIG_PATH
# (a cache variable): libsqlcipher-dev cannot be installed for two architectures at once, so
# ./run unpacks the arm64 one into .deps-cache/ and points this at it.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${SOTTO_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
if(SOTTO_EXTRA_PKG_CONFIG_PATH)
  set(ENV{PKG_CONFIG_PATH} "${SOTTO_EXTRA_PKG_CONFIG_PATH}")
endif()

find_program(SOTTO_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64)
if(SOTTO_QEMU_AARCH64)
  # The arm64 C library is the multiarch one (libc6:arm64), where qemu looks by default.
  set(CMAKE_CROSSCOMPILING_EMULATOR ${SOTTO_QEMU_AARCH64})
endif()
