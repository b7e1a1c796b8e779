# sotto_warnings(target): the warning set every first-party target builds with.
function(sotto_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align -Wunused
    -Woverloaded-virtual -Wnull-dereference -Wformat=2 -Wimplicit-fallthrough)
  if(SOTTO_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
    # gcc 12 at -O3 (the Release build) reports impossible sizes inside
    # libstdc++'s own vector and string code (GCC bugs 105329, 105651), and
    # with the sanitizers it takes boost::optional's storage in Beast's HTTP
    # parser for uninitialized (GCC bug 80635). They stay warnings there, so a
    # build still shows them but completes.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE
        -Wno-error=restrict -Wno-error=stringop-overflow -Wno-error=stringop-overread
        -Wno-error=array-bounds -Wno-error=maybe-uninitialized)
    endif()
  endif()
endfunction()
