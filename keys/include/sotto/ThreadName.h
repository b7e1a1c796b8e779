// Names the threads sotto starts (the SDK's, the relay's), so a debugger, a profiler or
// `top -H` shows which thread is sotto's and what it does. Internal: not an installed header.
#pragma once

#if defined(__linux__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace sotto {

// `name`: 15 characters at most (Linux's limit). Does nothing where the platform has no
// thread names; a failure is ignored, since a name is only a debugging aid.
inline void name_this_thread(const char* name) {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), name);
#elif defined(__APPLE__)
  pthread_setname_np(name);
#else
  (void)name;
#endif
}

}  // namespace sotto
