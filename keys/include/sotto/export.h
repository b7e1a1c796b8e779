// Symbol visibility for sotto's public API. Everything else in libsotto is hidden.
#pragma once

#if defined(_WIN32)
// Windows: exported while libsotto itself is compiled (SOTTO_BUILDING, set by its CMake
// targets, and for the static twin the unit tests link), imported by everyone else, who
// then links sotto.dll through its import library.
#if defined(SOTTO_BUILDING)
#define SOTTO_API __declspec(dllexport)
#else
#define SOTTO_API __declspec(dllimport)
#endif
#else
#define SOTTO_API __attribute__((visibility("default")))
#endif
