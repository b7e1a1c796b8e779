#include "sotto/keys/SafetyNumber.h"

#include <fingerprint.h>

#include <string>

namespace sotto::keys {
namespace {

constexpr int kIterations = 5200;
constexpr int kScannableVersion = 1;

struct GeneratorFree {
  void operator()(fingerprint_generator* g) const { fingerprint_generator_free(g); }
};

}  // namespace

Result<SafetyNumber> safety_number(const Context& ctx, std::string_view local_id,
                                   ByteView local_identity_key, std::string_view remote_id,
                                   ByteView remote_identity_key) {
  SOTTO_TRY_ASSIGN(auto local,
                   decode_public_key(ctx, local_identity_key, "the local identity key"));
  SOTTO_TRY_ASSIGN(auto remote,
                   decode_public_key(ctx, remote_identity_key, "the remote identity key"));
  fingerprint_generator* raw_gen = nullptr;
  int rc = fingerprint_generator_create(&raw_gen, kIterations, kScannableVersion, ctx.get());
  std::unique_ptr<fingerprint_generator, GeneratorFree> gen(raw_gen);
  if (rc < 0) return signal_error(rc, "creating a safety number generator");
  std::string l(local_id), r(remote_id);  // NUL-terminated copies for the C API
  Ref<fingerprint> fp;
  rc = fingerprint_generator_create_for(gen.get(), l.c_str(), local.get(), r.c_str(), remote.get(),
                                        fp.out());
  if (rc < 0) return signal_error(rc, "computing a safety number");
  SafetyNumber out;
  out.digits = displayable_fingerprint_text(fingerprint_get_displayable(fp.get()));
  signal_buffer* raw = nullptr;
  rc = scannable_fingerprint_serialize(&raw, fingerprint_get_scannable(fp.get()));
  Buffer buf(raw);
  if (rc < 0) return signal_error(rc, "serializing a safety number");
  out.scannable = copy(buf.get());
  return out;
}

Status compare_scanned(const Context& ctx, const SafetyNumber& ours, ByteView scanned) {
  Ref<scannable_fingerprint> mine, theirs;
  int rc = scannable_fingerprint_deserialize(mine.out(), ours.scannable.data(),
                                             ours.scannable.size(), ctx.get());
  if (rc < 0) return signal_error(rc, "reading our safety number");
  rc = scannable_fingerprint_deserialize(theirs.out(), scanned.data(), scanned.size(), ctx.get());
  if (rc < 0)
    return make_error(ErrorCode::kInvalidArgument,
                      "the scanned code is not a sotto safety number; scan it again");
  rc = scannable_fingerprint_compare(mine.get(), theirs.get());
  if (rc < 0) return signal_error(rc, "comparing safety numbers");
  if (rc != 1)
    return make_error(ErrorCode::kUntrustedIdentity,
                      "the safety numbers do not match: do not trust this conversation until "
                      "both of you have checked your keys");
  return {};
}

std::string format_digits(std::string_view digits) {
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && i % 5 == 0) out.push_back(' ');
    out.push_back(digits[i]);
  }
  return out;
}

}  // namespace sotto::keys
