// Writes two profiles with known contents on one platform and checks them on another: the
// profile directory (SQLCipher pages, the key-derivation file, libsignal's records) is the
// same on every processor and operating system, so a user can carry it from one to the other.
//
//   cross_profile_tool write DIR   alice and bob in DIR (a folder named with non-ASCII
//                                  letters each), a session and a group between them, and
//                                  alice's first messages to bob in DIR/*.bin
//   cross_profile_tool check DIR   opens both with their passphrases, decrypts what alice sent,
//                                  answers, checks the answer and the safety number; once
//   cross_profile_tool hold DIR    keeps alice's profile open until its stdout is closed (or
//                                  30 s), printing "holding" first
//   cross_profile_tool busy DIR    after a line on stdin, expects alice's profile to be busy
//
// Prints what it checked; exits 0 when everything held, 1 with the reason otherwise.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <thread>

#include "platform/Platform.h"
#include "sotto/Profile.h"

namespace {

namespace fs = std::filesystem;
using sotto::Bytes;
using sotto::ByteView;

// Non-ASCII names and passphrases: both must arrive as the same bytes on every platform.
const char* const kAliceDir = "\xc3\xa5lice-\xe6\x97\xa5\xe6\x9c\xac";  // "ålice-日本"
const char* const kBobDir =
    "b\xc3\xb8"
    "b";  // "bøb"
const char* const kAlicePass = "alice's passphrase \xc3\xbc";
const char* const kBobPass = "bob's passphrase \xe2\x82\xac";
const sotto::Address kAlice{"alice-account", 1};
const sotto::Address kBob{"bob-account", 1};
const std::string kGroup = "cross-platform group";
const std::string kFirst = "first words from alice, written on one machine";
const std::string kGroupText = "a group message, its sender key stored in bob's profile";
const std::string kAnswer = "bob answers from the other machine";

[[noreturn]] void fail(const std::string& what) {
  std::cout << "FAIL: " << what << std::endl;
  std::exit(1);
}

template <class T>
T need(sotto::Result<T> r, const std::string& what) {
  if (!r.ok()) fail(what + ": " + r.error().message);
  return std::move(r).value();
}
void need(sotto::Status s, const std::string& what) {
  if (!s.ok()) fail(what + ": " + s.error().message);
}

ByteView view(const std::string& s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
std::string text(const Bytes& b) { return std::string(b.begin(), b.end()); }

void write_bytes(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  if (!out) fail("cannot write " + sotto::platform::to_utf8(path));
}
Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read " + sotto::platform::to_utf8(path));
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::unique_ptr<sotto::Profile> open(const fs::path& dir, const char* passphrase) {
  return need(sotto::Profile::open(dir, sotto::SecureBytes::from_string(passphrase)),
              "opening " + sotto::platform::to_utf8(dir));
}

void write(const fs::path& dir) {
  fs::path alice_dir = dir / sotto::platform::from_utf8(kAliceDir);
  fs::path bob_dir = dir / sotto::platform::from_utf8(kBobDir);
  auto alice = open(alice_dir, kAlicePass);
  auto bob = open(bob_dir, kBobPass);
  need(alice->create_identity(kAlice.account, kAlice.device_id), "alice's identity");
  need(bob->create_identity(kBob.account, kBob.device_id), "bob's identity");
  Bytes bundle = need(bob->issue_bundle(), "bob's bundle");
  need(alice->start_session(kBob, bundle), "alice's session with bob");
  sotto::Ciphertext first = need(alice->encrypt(kBob, view(kFirst)), "encrypting to bob");
  Bytes first_file{static_cast<uint8_t>(first.type)};
  first_file.insert(first_file.end(), first.bytes.begin(), first.bytes.end());
  write_bytes(dir / "to-bob.bin", first_file);

  Bytes distribution = need(alice->group_sender_key(view(kGroup)), "alice's sender key");
  need(bob->group_process_sender_key(view(kGroup), kAlice, distribution), "bob takes the key");
  write_bytes(dir / "group.bin", need(alice->group_encrypt(view(kGroup), view(kGroupText)),
                                      "encrypting to the group"));
  sotto::SafetyNumber number = need(alice->safety_number(kBob.account), "the safety number");
  write_bytes(dir / "safety-number.txt", Bytes(number.digits.begin(), number.digits.end()));
  std::cout << "wrote alice's and bob's profiles in " << sotto::platform::to_utf8(dir) << std::endl;
}

void check(const fs::path& dir) {
  fs::path alice_dir = dir / sotto::platform::from_utf8(kAliceDir);
  fs::path bob_dir = dir / sotto::platform::from_utf8(kBobDir);
  std::string digits = text(read_bytes(dir / "safety-number.txt"));
  {
    auto wrong = sotto::Profile::open(bob_dir, sotto::SecureBytes::from_string(kAlicePass));
    if (wrong.code() != sotto::ErrorCode::kWrongKey) fail("a wrong passphrase was not refused");
  }
  sotto::Ciphertext answer;
  {
    auto bob = open(bob_dir, kBobPass);
    Bytes file = read_bytes(dir / "to-bob.bin");
    if (file.empty()) fail("to-bob.bin is empty");
    sotto::Ciphertext first{static_cast<sotto::CiphertextType>(file[0]),
                            Bytes(file.begin() + 1, file.end())};
    if (text(need(bob->decrypt(kAlice, first), "bob decrypting alice's message")) != kFirst)
      fail("bob read something else than alice wrote");
    Bytes group = read_bytes(dir / "group.bin");
    if (text(need(bob->group_decrypt(view(kGroup), kAlice, group), "the group message")) !=
        kGroupText)
      fail("the group message reads differently");
    if (need(bob->safety_number(kAlice.account), "bob's safety number").digits != digits)
      fail("bob's safety number differs from alice's");
    answer = need(bob->encrypt(kAlice, view(kAnswer)), "bob's answer");
  }
  auto alice = open(alice_dir, kAlicePass);
  if (need(alice->identity(), "alice's identity").account != kAlice.account)
    fail("alice's identity changed");
  if (text(need(alice->decrypt(kBob, answer), "alice decrypting bob's answer")) != kAnswer)
    fail("alice read something else than bob answered");
  if (need(alice->safety_number(kBob.account), "alice's safety number").digits != digits)
    fail("alice's safety number changed");
  std::cout << "ok: both profiles open with their passphrases; the message, the group message, "
               "the answer and the safety number all check"
            << std::endl;
}

void hold(const fs::path& dir) {
  auto alice = open(dir / sotto::platform::from_utf8(kAliceDir), kAlicePass);
  std::cout << "holding" << std::endl;
  // Until the reader at the other end of stdout has gone (a write then fails), 30 s at most.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!(std::cout << '.' << std::flush)) return;
  }
}

void busy(const fs::path& dir) {
  std::string line;
  if (!std::getline(std::cin, line) || line != "holding")
    fail("the other process did not open the profile (it said '" + line + "')");
  auto second = sotto::Profile::open(dir / sotto::platform::from_utf8(kAliceDir),
                                     sotto::SecureBytes::from_string(kAlicePass));
  if (second.code() != sotto::ErrorCode::kBusy)
    fail(second.ok() ? "a second process opened a profile that is open"
                     : "expected busy, got: " + second.error().message);
  if (second.error().message.find("open in another process") == std::string::npos)
    fail("the busy error does not say why: " + second.error().message);
  std::cout << "ok: " << second.error().message << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: cross_profile_tool write|check|hold|busy DIR\n";
    return 2;
  }
  std::string mode = argv[1];
  fs::path dir = sotto::platform::from_utf8(argv[2]);
  if (mode == "write")
    write(dir);
  else if (mode == "check")
    check(dir);
  else if (mode == "hold")
    hold(dir);
  else if (mode == "busy")
    busy(dir);
  else
    fail("unknown mode " + mode);
  return 0;
}
