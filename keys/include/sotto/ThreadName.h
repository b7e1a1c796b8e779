// Names the threads sotto starts (the SDK's, the relay's), so a debugger, a profiler or
// `top -H` shows which thread is sotto's and what it does. Internal: not an installed header.
// Implemented by the platform layer (sdk/src/platform).
#pragma once

namespace sotto {

// `name`: 15 characters at most (Linux's limit). Does nothing where the platform has no
// thread names; a failure is ignored, since a name is only a debugging aid.
void name_this_thread(const char* name);

}  // namespace sotto
