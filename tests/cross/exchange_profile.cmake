# cmake -DMODE=exchange|lock -DWRITER=cmd -DCHECKER=cmd -DDIR=dir -P exchange_profile.cmake
#   exchange: WRITER writes two profiles into DIR, CHECKER opens and checks them.
#   lock:     WRITER writes them; WRITER keeps one open while CHECKER, another process, must
#             be told it is busy.
# Commands are words separated by '|' (an emulator may come first).
string(REPLACE "|" ";" writer "${WRITER}")
string(REPLACE "|" ";" checker "${CHECKER}")
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}")

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "${what}: ${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}): ${ARGN}")
  endif()
endfunction()

run("write" ${writer} write "${DIR}")
if(MODE STREQUAL "exchange")
  run("check" ${checker} check "${DIR}")
elseif(MODE STREQUAL "lock")
  # A pipeline: the holder says "holding" once the profile is open, and the checker, reading
  # that, tries to open it too. The holder stops when the checker has gone.
  execute_process(COMMAND ${writer} hold "${DIR}" COMMAND ${checker} busy "${DIR}"
    RESULTS_VARIABLE rcs OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "busy: ${out}${err}")
  list(GET rcs 1 rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the second process was not told the profile is busy (${rcs})")
  endif()
else()
  message(FATAL_ERROR "MODE must be exchange or lock, not '${MODE}'")
endif()
file(REMOVE_RECURSE "${DIR}")
