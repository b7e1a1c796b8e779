// The smallest program an app developer would write against an installed sotto: two
// profiles, a session from a bundle, one message each way.
#include <sotto/Profile.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: consumer DIR\n");
    return 2;
  }
  std::string dir = argv[1];
  auto fail = [](const sotto::Error& e) {
    std::fprintf(stderr, "error %s: %s\n", std::string(sotto::error_code_name(e.code)).c_str(),
                 e.message.c_str());
    return 1;
  };
  sotto::SecureBytes key_a(32), key_b(32);
  key_a.data()[0] = 1;
  key_b.data()[0] = 2;
  auto alice = sotto::Profile::open_with_key(dir + "/alice", key_a);
  if (!alice) return fail(alice.error());
  auto bob = sotto::Profile::open_with_key(dir + "/bob", key_b);
  if (!bob) return fail(bob.error());
  if (auto s = (*alice)->create_identity("alice", 1); !s) return fail(s.error());
  if (auto s = (*bob)->create_identity("bob", 1); !s) return fail(s.error());

  auto bundle = (*bob)->issue_bundle();
  if (!bundle) return fail(bundle.error());
  if (auto s = (*alice)->start_session({"bob", 1}, *bundle); !s) return fail(s.error());
  std::string text = "hello from an installed sotto";
  auto ct = (*alice)->encrypt({"bob", 1}, sotto::as_bytes(text));
  if (!ct) return fail(ct.error());
  auto pt = (*bob)->decrypt({"alice", 1}, *ct);
  if (!pt) return fail(pt.error());
  if (std::string(sotto::as_chars(*pt)) != text) {
    std::fprintf(stderr, "round trip changed the text\n");
    return 1;
  }
  std::printf("ok: %s\n", std::string(sotto::as_chars(*pt)).c_str());
  return 0;
}
