# Windows x86-64 with MinGW-w64 (Debian's g++-mingw-w64-x86-64-posix: GCC 12, POSIX threads
# through winpthread, which std::thread needs). `./run cross windows` uses this file.
#
#   cmake -S . -B build-windows -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-windows-x86_64.cmake \
#     -DSOTTO_WINDOWS_DEPS=$PWD/.deps-cache/windows-KEY -DSOTTO_BUILD_RELAY=OFF \
#     -DSOTTO_BUILD_APPS=OFF -DSOTTO_RELAY_BINARY=$PWD/build/relay/sotto-relay
#
# Debian has no MinGW builds of the SDK's libraries: ./run cross-compiles them (static) from
# Debian's source packages into SOTTO_WINDOWS_DEPS, the one place libraries and headers are
# looked for; /usr/include is never seen (Boost's headers come through a symlink there).
# Programs (protoc) come from the build machine. Tests run under Wine, which CMake and ctest
# put in front of every test program (CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(SOTTO_TRIPLE x86_64-w64-mingw32)

set(CMAKE_C_COMPILER ${SOTTO_TRIPLE}-gcc-posix)
set(CMAKE_CXX_COMPILER ${SOTTO_TRIPLE}-g++-posix)
set(CMAKE_RC_COMPILER ${SOTTO_TRIPLE}-windres)

if(NOT SOTTO_WINDOWS_DEPS)
  set(SOTTO_WINDOWS_DEPS "$ENV{SOTTO_WINDOWS_DEPS}")
endif()
if(NOT SOTTO_WINDOWS_DEPS OR NOT EXISTS "${SOTTO_WINDOWS_DEPS}/lib")
  message(FATAL_ERROR "SOTTO_WINDOWS_DEPS must name the directory holding the SDK's libraries "
    "built for Windows (./run cross windows makes it in .deps-cache/windows-*), "
    "got '${SOTTO_WINDOWS_DEPS}'")
endif()
# Passed on to the test projects CMake configures (try_compile).
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SOTTO_WINDOWS_DEPS)

set(CMAKE_FIND_ROOT_PATH ${SOTTO_WINDOWS_DEPS} /usr/${SOTTO_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config reads only the .pc files of the libraries built for Windows, and prefixes nothing
# (their paths are already absolute).
set(ENV{PKG_CONFIG_LIBDIR} "${SOTTO_WINDOWS_DEPS}/lib/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
# The libraries are static: pkg-config's --static adds what they need in turn (OpenSSL's
# ws2_32 and crypt32 under SQLCipher).
set(PKG_CONFIG_ARGN --static)

# protoc from the build machine (the same 3.21.12 as the library built for Windows).
set(Protobuf_PROTOC_EXECUTABLE /usr/bin/protoc CACHE FILEPATH "protoc of the build machine")
set(OPENSSL_ROOT_DIR ${SOTTO_WINDOWS_DEPS})
set(OPENSSL_USE_STATIC_LIBS TRUE)

# Windows 10 APIs (Asio asks for a _WIN32_WINNT; SetThreadDescription is loaded at run time).
add_compile_definitions(_WIN32_WINNT=0x0A00 WINVER=0x0A00)
# Programs carry their C and C++ runtimes (libgcc, libstdc++, winpthread) inside: a test .exe
# runs under Wine with nothing beside it but libsotto.dll.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static")

# Wine with a prefix (its C: drive and registry) of this build's own, made on first use, and
# without its debugging chatter on stderr.
find_program(SOTTO_WINE NAMES wine wine64)
set(SOTTO_WINEPREFIX "${CMAKE_BINARY_DIR}/wine" CACHE PATH "The Wine prefix the tests run in")
if(SOTTO_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR env WINEPREFIX=${SOTTO_WINEPREFIX} WINEDEBUG=-all
    ${SOTTO_WINE})
endif()
