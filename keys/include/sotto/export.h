// Symbol visibility for sotto's public API. Everything else in libsotto is hidden.
#pragma once

#if defined(_WIN32)
#define SOTTO_API __declspec(dllexport)
#else
#define SOTTO_API __attribute__((visibility("default")))
#endif
