# Installs the built tree into a scratch prefix, then configures, builds and runs a tiny
# consumer against it twice: with find_package(sotto) and with pkg-config; compiles the C
# example with pkg-config's flags and -Werror; runs the installed programs with no
# LD_LIBRARY_PATH; and checks the docs, the unit file and the sample config are there.
# Inputs: BUILD_DIR, SOURCE_DIR, EXAMPLE_C, WORK_DIR, GENERATOR, SANITIZE (the library was built with
# ASan+UBSan, so the consumer must be too: the ASan runtime has to come first).
file(REMOVE_RECURSE "${WORK_DIR}")
set(san_flags "")
if(SANITIZE)
  set(san_flags "-fsanitize=address,undefined")
endif()
set(prefix "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f include/sotto/Profile.h include/sotto/Result.h include/sotto.h
          lib/cmake/sotto/sottoConfig.cmake lib/cmake/sotto/sottoConfigVersion.cmake
          lib/pkgconfig/sotto.pc share/doc/sotto/README.md share/doc/sotto/sdk-guide.md
          share/doc/sotto/operating-the-relay.md share/doc/sotto/examples/hello.c
          share/doc/sotto/examples/sotto-relay.service
          share/doc/sotto/examples/relay.conf.example)
  file(GLOB found "${prefix}/${f}" "${prefix}/lib/*/${f}")
  string(REPLACE "lib/" "lib/*/" alt "${f}")
  file(GLOB found_alt "${prefix}/${alt}")
  if(NOT found AND NOT found_alt)
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()

# 1. find_package(sotto)
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/consumer" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_FLAGS=${san_flags}")
run(${CMAKE_COMMAND} --build "${WORK_DIR}/consumer")
run("${WORK_DIR}/consumer/consumer" "${WORK_DIR}/profile-cmake")

# 2. pkg-config
file(GLOB_RECURSE pc "${prefix}/*/sotto.pc")
get_filename_component(pcdir "${pc}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} "${pcdir}")
execute_process(COMMAND pkg-config --cflags --libs sotto OUTPUT_VARIABLE flags
                OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know the installed sotto.pc")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
get_filename_component(libdir "${pc}" DIRECTORY)
get_filename_component(libdir "${libdir}" DIRECTORY)
# The C++ headers need C++20; the project's own -std stays its own (sotto.pc sets none).
run(c++ -std=c++20 "${SOURCE_DIR}/main.cpp" ${flags} ${san_flags} "-Wl,-rpath,${libdir}"
    -o "${WORK_DIR}/consumer-pc")
run("${WORK_DIR}/consumer-pc" "${WORK_DIR}/profile-pc")
# A C program with the same flags, warnings as errors (a C++ -std in Cflags would fail it).
run(cc -std=c11 -Wall -Wextra -Werror "${EXAMPLE_C}" ${flags} ${san_flags}
    "-Wl,-rpath,${libdir}" -o "${WORK_DIR}/hello-c")

# 3. The installed programs start from the prefix alone: no LD_LIBRARY_PATH.
foreach(program sotto-chat sotto-desktop)
  if(EXISTS "${prefix}/bin/${program}")
    run(${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH QT_QPA_PLATFORM=offscreen
        "${prefix}/bin/${program}" --help)
  elseif(program STREQUAL "sotto-chat")
    message(FATAL_ERROR "cmake --install did not install bin/sotto-chat")
  endif()
endforeach()
message(STATUS "installed package works with find_package(sotto), pkg-config, C and its programs")
