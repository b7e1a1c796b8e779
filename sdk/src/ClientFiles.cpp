// sotto::Client, files (protocol.md 14.8 and 11.1): encrypted on this device with a random
// key, uploaded as an opaque blob, and referenced from an end-to-end encrypted message that
// carries the key and the blob's digest. Downloads resume, and nothing is decrypted before
// the whole blob matches its digest.
//
// In the profile a file only ever exists encrypted: the sender keeps the blob it uploaded and
// a receiver the blob it downloaded, under random names in attachments/blobs/ (their keys are
// in the encrypted database). save_attachment() and read_attachment() decrypt one to where the
// app asks, never into the profile. Plain copies an earlier version kept are encrypted the
// same way, one at a time while the client is idle, and then overwritten and removed.
#include <cstdio>
#include <cstring>
#include <fstream>

#include "AttachmentCipher.h"
#include "ClientImpl.h"
#include "platform/Platform.h"

namespace sotto {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxThumbnail = 8 * 1024;
constexpr std::chrono::milliseconds kTransferTimeout{30'000};  // per read or write, not total

std::string guess_content_type(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const std::map<std::string, std::string> types = {
      {".png", "image/png"},        {".jpg", "image/jpeg"},   {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},        {".webp", "image/webp"},  {".pdf", "application/pdf"},
      {".txt", "text/plain"},       {".md", "text/markdown"}, {".mp4", "video/mp4"},
      {".mp3", "audio/mpeg"},       {".ogg", "audio/ogg"},    {".zip", "application/zip"},
      {".json", "application/json"}};
  auto it = types.find(ext);
  return it == types.end() ? "application/octet-stream" : it->second;
}

// PNG and JPEG dimensions from the file's header; {0, 0} when unknown.
std::pair<uint32_t, uint32_t> image_size(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<uint8_t> h(64 * 1024);
  in.read(reinterpret_cast<char*>(h.data()), static_cast<std::streamsize>(h.size()));
  h.resize(static_cast<size_t>(in.gcount()));
  auto be16 = [&](size_t i) { return uint32_t{h[i]} << 8 | h[i + 1]; };
  auto be32 = [&](size_t i) { return be16(i) << 16 | be16(i + 2); };
  static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (h.size() >= 24 && std::equal(std::begin(png), std::end(png), h.begin()) &&
      std::memcmp(&h[12], "IHDR", 4) == 0)
    return {be32(16), be32(20)};
  if (h.size() >= 4 && h[0] == 0xFF && h[1] == 0xD8) {
    size_t i = 2;
    while (i + 9 < h.size()) {
      if (h[i] != 0xFF) return {0, 0};
      uint8_t marker = h[i + 1];
      uint32_t len = be16(i + 2);
      bool sof =
          marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
      if (sof) return {be16(i + 7), be16(i + 5)};
      i += 2 + len;
    }
  }
  return {0, 0};
}

// A file name that is safe to create inside our own folder and to send: UTF-8 (a file
// system may allow any bytes), no directories or control characters, at most 120 bytes kept
// from the end (where the extension is), cut between characters.
std::string safe_name(const std::string& raw) {
  std::string name = repair_utf8(raw);
  for (char& c : name)
    if (c == '/' || c == '\\' || c == '\0' || static_cast<unsigned char>(c) < 0x20) c = '_';
  name = std::string(utf8_tail(name, 120));
  if (name.empty() || name == "." || name == "..") name = "file";
  return name;
}

Error http_status_error(const net::HttpResult& r, const std::string& what) {
  std::string msg = what + ": the relay answered HTTP " + std::to_string(r.status);
  if (!r.body.empty()) msg += " (" + r.body.substr(0, 200) + ")";
  switch (r.status) {
    case 401:
      return make_error(ErrorCode::kUnauthorized, msg);
    case 403:
      return make_error(ErrorCode::kForbidden, msg);
    case 404:
      return make_error(ErrorCode::kNotFound,
                        msg + "; the file is no longer on the relay (files are kept 30 days)");
    case 409:
      return make_error(ErrorCode::kConflict, msg);
    case 413:
      return make_error(ErrorCode::kTooLarge, msg);
    case 429:
      return make_error(ErrorCode::kRateLimited,
                        msg + "; try again in " + std::to_string(r.retry_after_ms / 1000) + " s");
    default:
      return make_error(ErrorCode::kUnavailable, msg + "; try again later");
  }
}

// A name for a file in the profile that says nothing about what it holds.
std::string random_name() {
  Bytes b(16);
  randombytes_buf(b.data(), b.size());
  return to_hex(b);
}

// `inner` is `outer` or somewhere below it (both made absolute, symlinks resolved as far as
// they exist).
bool is_within(const fs::path& inner, const fs::path& outer) {
  std::error_code ec;
  fs::path a = fs::weakly_canonical(fs::absolute(inner, ec), ec);
  fs::path b = fs::weakly_canonical(fs::absolute(outer, ec), ec);
  auto [at, _] = std::mismatch(b.begin(), b.end(), a.begin(), a.end());
  return at == b.end();
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// Overwrites a plain file with zeros before removing it, so its bytes do not stay in the free
// space of a file system that rewrites blocks in place (on copy-on-write file systems and SSDs
// this is a best effort; threat-model.md says so). false when it is still there.
bool scrub(const fs::path& p) {
  std::error_code ec;
  uint64_t size = fs::file_size(p, ec);
  if (!ec) {
    if (platform::File f = platform::open_file(p, "r+b")) {
      std::vector<char> zeros(64 * 1024, 0);
      for (uint64_t done = 0; done < size;) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), size - done));
        if (std::fwrite(zeros.data(), 1, n, f.get()) != n) break;
        done += n;
      }
      (void)platform::sync_file(f.get(), p);
    }
  }
  fs::remove(p, ec);
  return !fs::exists(p, ec);
}

// A folder of the profile's own, made when missing.
Status make_folder(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!ec) return {};
  return make_error(
      ec == std::errc::no_space_on_device ? ErrorCode::kStorageFull : ErrorCode::kStorageIo,
      "cannot create " + dir.string() + ": " + ec.message());
}

Error nothing_stored(uint32_t index, const std::string& message_id) {
  return make_error(ErrorCode::kInvalidState,
                    "attachment " + std::to_string(index) + " of message " + message_id +
                        " is not on this device yet: call download_attachment() first");
}

}  // namespace

fs::path Client::Impl::attachments_dir() const { return profile->directory() / "attachments"; }
fs::path Client::Impl::blobs_dir() const { return attachments_dir() / "blobs"; }

// An earlier version kept plain copies as attachments/<conversation>/<name> and stored their
// absolute paths: found where the profile is now, even if it moved. Empty for anything else.
fs::path Client::Impl::plain_copy_path(const std::string& stored) const {
  fs::path p(stored);
  std::string dir = p.parent_path().filename().string();
  std::string name = p.filename().string();
  if (!all_digits(dir) || name.empty() || name == "." || name == "..") return {};
  return attachments_dir() / dir / name;
}

void Client::Impl::remove_files(const std::vector<StoredAttachment>& files) {
  std::error_code ec;
  for (const auto& f : files) {
    if (f.blob) fs::remove(blobs_dir() / f.blob->name, ec);
    if (!f.local_path.empty()) {
      fs::path plain = plain_copy_path(f.local_path);
      if (!plain.empty()) scrub(plain);
    }
  }
}

void Client::Impl::sweep_attachment_files() {
  std::error_code ec;
  // Uploads that never finished, and their encrypted staging files.
  fs::remove_all(attachments_dir() / "tmp", ec);
  // Encrypted files no row names: a send or download stopped between moving its file into
  // place and the commit that records it.
  auto names = locked([&] { return history.blob_names(); });
  if (!names.ok()) return;
  std::set<std::string> known(names->begin(), names->end());
  std::vector<fs::path> orphans;
  for (auto it = fs::directory_iterator(blobs_dir(), ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    if (!known.count(it->path().filename().string())) orphans.push_back(it->path());
  for (const auto& p : orphans) fs::remove(p, ec);
}

Result<StoredAttachment> Client::Impl::find_attachment(ConversationId conversation,
                                                       const std::string& message_id,
                                                       uint32_t index) {
  SOTTO_TRY_ASSIGN(Bytes id, parse_message_id(message_id));
  return locked([&]() -> Result<StoredAttachment> {
    SOTTO_TRY_ASSIGN(auto m, history.find_in_conversation(conversation, id));
    if (!m) return make_error(ErrorCode::kNotFound, "no message " + message_id + " there");
    SOTTO_TRY_ASSIGN(auto files, history.attachments(m->row));
    for (auto& f : files)
      if (f.index == index) return std::move(f);
    return make_error(ErrorCode::kNotFound, "that message has no attachment " +
                                                std::to_string(index) +
                                                (m->message.deleted ? " (it was deleted)" : ""));
  });
}

Status Client::Impl::encrypt_plain_copy(int64_t row, uint32_t index) {
  std::lock_guard guard(plain_copy_mu);
  auto current = [&]() -> Result<std::optional<StoredAttachment>> {
    SOTTO_TRY_ASSIGN(auto files, history.attachments(row));
    for (auto& f : files)
      if (f.index == index) return std::optional<StoredAttachment>(std::move(f));
    return std::optional<StoredAttachment>();
  };
  SOTTO_TRY_ASSIGN(auto a, locked(current));
  if (!a || a->local_path.empty()) return {};  // done meanwhile, or deleted
  fs::path plain = plain_copy_path(a->local_path);
  std::error_code ec;
  bool have_plain = !plain.empty() && fs::is_regular_file(plain, ec);
  bool lost = false;  // no plain copy to encrypt (removed by hand): nothing is stored now
  if (!a->blob && have_plain) {
    SOTTO_TRY(make_folder(blobs_dir()));
    std::string name = random_name();
    fs::path blob = blobs_dir() / name;
    SOTTO_TRY_ASSIGN(auto secrets, encrypt_attachment(plain, blob));
    StoredBlob b{name, Bytes(secrets.key.span().begin(), secrets.key.span().end()), secrets.digest,
                 secrets.size};
    bool kept = false;
    Status s = txn([&]() -> Status {
      SOTTO_TRY_ASSIGN(auto now, current());
      if (!now || now->local_path.empty() || now->blob) return {};  // deleted meanwhile
      SOTTO_TRY_ASSIGN(kept, history.add_attachment_blob(row, index, b));
      return {};
    });
    if (!s.ok() || !kept) fs::remove(blob, ec);
    SOTTO_TRY(s);
    if (!kept) return {};
  } else if (!a->blob) {
    lost = true;
  }
  // The encrypted copy is committed: only now does the plain one go.
  if (have_plain && !scrub(plain))
    return make_error(ErrorCode::kStorageIo,
                      "cannot remove the plain copy " + plain.string() + " of a file");
  fs::remove(plain.parent_path(), ec);  // only when empty
  Effects fx;
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY(history.clear_attachment_path(row, index));
    if (lost) emit_changed(row, fx);
    return {};
  }));
  emit(std::move(fx.events));
  return {};
}

bool Client::Impl::continue_plain_copies() {
  auto next = locked([&] { return history.plain_attachments(plain_copy_failed.size() + 1); });
  if (!next.ok()) return false;
  for (const auto& a : *next) {
    if (plain_copy_failed.count({a.row, a.index})) continue;
    Status s = encrypt_plain_copy(a.row, a.index);
    if (!s.ok()) {
      // Tried again when the client starts next; the plain copy stays meanwhile.
      diagnose("a file kept in plain form by an earlier version could not be encrypted: " +
               s.error().message);
      plain_copy_failed.insert({a.row, a.index});
    }
    return true;
  }
  if (!plain_copy_failed.empty()) return false;
  // Every plain copy a row named is encrypted. What is left in the earlier version's folders
  // belongs to no message (a copy whose send or download never committed): it goes too.
  std::error_code ec;
  std::vector<fs::path> dirs;
  for (auto it = fs::directory_iterator(attachments_dir(), ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    if (it->is_directory(ec) && all_digits(it->path().filename().string()))
      dirs.push_back(it->path());
  for (const auto& d : dirs) {
    std::vector<fs::path> files;
    for (auto it = fs::directory_iterator(d, ec); !ec && it != fs::directory_iterator();
         it.increment(ec))
      if (it->is_regular_file(ec)) files.push_back(it->path());
    for (const auto& f : files) scrub(f);
    fs::remove(d, ec);
  }
  return false;
}

net::Headers Client::Impl::auth_headers() {
  auto a = locked([&] { return history.account(); });
  net::Headers h;
  if (a.ok() && *a)
    h.emplace_back("Authorization",
                   basic_auth(Credentials{(*a)->account, (*a)->device_id, (*a)->auth_secret}));
  return h;
}

Result<uint64_t> Client::Impl::attachment_limit() {
  SOTTO_TRY_ASSIGN(auto r, call(make_request(wire::OP_SERVER_INFO)));
  if (r.status() != wire::OK) return status_error(r, "reading the relay's limits");
  return r.server_info().attachment_max_bytes();
}

Result<std::string> Client::Impl::send_file(ConversationId conversation, const fs::path& file,
                                            const FileOptions& file_options,
                                            const TransferProgress& progress,
                                            const std::atomic<bool>* cancel) {
  SOTTO_TRY_ASSIGN(auto me, registered_account());
  {
    auto conv = locked([&] { return history.conversation(conversation); });
    if (!conv.ok()) return std::move(conv).error();
    if (!*conv)
      return make_error(ErrorCode::kNotFound, "no conversation " + std::to_string(conversation));
  }
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    return make_error(ErrorCode::kNotFound, "cannot read " + file.string() + ": not a file");
  uint64_t size = fs::file_size(file, ec);
  if (ec) return make_error(ErrorCode::kNotFound, "cannot read " + file.string());
  if (file_options.thumbnail.size() > kMaxThumbnail)
    return make_error(ErrorCode::kInvalidArgument, "a thumbnail is at most 8 KiB");
  if (file_options.caption.size() > kMaxText)
    return make_error(ErrorCode::kTooLarge, "a caption is at most 16 KiB");
  for (auto [what, text] : {std::pair{"caption", &file_options.caption},
                            std::pair{"content type", &file_options.content_type},
                            std::pair{"file name", &file_options.file_name}})
    if (!is_valid_utf8(*text))
      return make_error(ErrorCode::kInvalidArgument,
                        std::string("the ") + what +
                            " is not valid UTF-8; nothing was sent (convert it to UTF-8)");
  // Refuse before anything is encrypted or sent.
  SOTTO_TRY_ASSIGN(uint64_t limit, attachment_limit());
  uint64_t blob_size = attachment_blob_size(size);
  if (limit && blob_size > limit)
    return make_error(ErrorCode::kTooLarge,
                      file.filename().string() + " is " + std::to_string(size >> 20) +
                          " MiB; this relay accepts files up to " + std::to_string(limit >> 20) +
                          " MiB. Nothing was sent");

  SOTTO_TRY(make_folder(attachments_dir() / "tmp"));
  Bytes tmp_name(16);
  randombytes_buf(tmp_name.data(), tmp_name.size());
  fs::path blob = attachments_dir() / "tmp" / (to_hex(tmp_name) + ".blob");
  struct Remove {
    fs::path p;
    ~Remove() {
      std::error_code e;
      if (!p.empty()) fs::remove(p, e);
    }
  } remove_blob{blob};
  SOTTO_TRY_ASSIGN(auto secrets, encrypt_attachment(file, blob, {}, cancel));

  auto req = make_request(wire::OP_ATTACHMENT_UPLOAD);
  req.mutable_attachment_upload()->set_size_bytes(secrets.blob_size);
  SOTTO_TRY_ASSIGN(auto slot, call(std::move(req)));
  if (slot.status() != wire::OK) return status_error(slot, "reserving an upload");
  SOTTO_TRY_ASSIGN(auto base, net::parse_url(options.relay_url));
  net::Url url = base;
  url.tls = base.tls;
  url.target = slot.attachment_upload().path();
  SOTTO_TRY_ASSIGN(
      auto put, net::http_put_file(url, auth_headers(), blob, progress, cancel, kTransferTimeout));
  if (put.status != 201) return http_status_error(put, "uploading " + file.filename().string());

  uint64_t t = now();
  Bytes id = new_message_id(t);
  content::AttachmentPointer ptr;
  ptr.set_id(slot.attachment_upload().attachment_id());
  ptr.set_key(std::string(secrets.key.span().begin(), secrets.key.span().end()));
  ptr.set_digest(str_of(secrets.digest));
  ptr.set_size(size);
  ptr.set_content_type(file_options.content_type.empty() ? guess_content_type(file)
                                                         : file_options.content_type);
  std::string name =
      file_options.file_name.empty() ? platform::to_utf8(file.filename()) : file_options.file_name;
  ptr.set_file_name(safe_name(name));
  auto [w, h] = file_options.width ? std::make_pair(file_options.width, file_options.height)
                                   : image_size(file);
  ptr.set_width(w);
  ptr.set_height(h);
  ptr.set_thumbnail(str_of(file_options.thumbnail));
  ptr.set_uploaded_at_ms(t);

  // This device keeps the blob it uploaded, still encrypted, under a name that says nothing.
  // Without it (it could not be moved) the sender downloads the file like anyone else.
  std::optional<StoredBlob> kept;
  std::string kept_name = random_name();
  fs::create_directories(blobs_dir(), ec);
  fs::rename(blob, blobs_dir() / kept_name, ec);
  if (!ec) {
    remove_blob.p = blobs_dir() / kept_name;
    kept = StoredBlob{kept_name, Bytes(secrets.key.span().begin(), secrets.key.span().end()),
                      secrets.digest, secrets.size};
  }

  Outgoing out;
  out.dm.set_message_id(str_of(id));
  out.dm.set_timestamp_ms(t);
  out.dm.set_text(file_options.caption);
  *out.dm.add_attachments() = ptr;
  out.files.emplace_back(ptr, std::move(kept));
  auto queued = queue_data(conversation, std::move(out));
  if (queued.ok()) remove_blob.p.clear();  // the profile names it now
  return queued;
}

Status Client::Impl::download_attachment(ConversationId conversation, const std::string& message_id,
                                         uint32_t index, const TransferProgress& progress,
                                         const std::atomic<bool>* cancel) {
  SOTTO_TRY(registered_account());
  SOTTO_TRY_ASSIGN(StoredAttachment a, find_attachment(conversation, message_id, index));
  std::error_code ec;
  if (a.blob) {
    if (fs::exists(blobs_dir() / a.blob->name, ec)) return {};
    // Its file is gone (removed by hand): fetch it again.
    SOTTO_TRY(txn([&] { return history.remove_attachment_blob(a.row, a.index); }));
  }
  if (!a.local_path.empty()) {
    fs::path plain = plain_copy_path(a.local_path);
    if (!plain.empty() && fs::exists(plain, ec)) return {};  // encrypted in the background
  }
  content::AttachmentPointer ptr;
  if (!ptr.ParseFromArray(a.pointer.data(), static_cast<int>(a.pointer.size())))
    return make_error(ErrorCode::kStorageCorrupt, "the stored attachment does not parse");
  if (ptr.key().size() != 32 || ptr.digest().size() != 32 || ptr.id().empty() ||
      ptr.id().find_first_not_of("0123456789abcdef") != std::string::npos)
    return make_error(ErrorCode::kInvalidMessage, "the attachment's description is damaged");

  SOTTO_TRY(make_folder(attachments_dir() / "partial"));
  fs::path partial = attachments_dir() / "partial" / (ptr.id() + ".blob");
  uint64_t blob_size = attachment_blob_size(ptr.size());
  uint64_t have = fs::exists(partial, ec) ? fs::file_size(partial, ec) : 0;
  if (have > blob_size) {
    fs::remove(partial, ec);
    have = 0;
  }
  if (have < blob_size) {
    SOTTO_TRY_ASSIGN(auto base, net::parse_url(options.relay_url));
    net::Url url = base;
    url.target = "/v1/attachments/" + ptr.id();
    SOTTO_TRY_ASSIGN(auto got, net::http_get_to_file(url, auth_headers(), partial, have, progress,
                                                     cancel, kTransferTimeout));
    if (got.status != 200 && got.status != 206)
      return http_status_error(got, "downloading " + ptr.file_name());
    have = fs::file_size(partial, ec);
    if (have != blob_size)
      return make_error(ErrorCode::kUnavailable,
                        "the download stopped after " + std::to_string(have) + " of " +
                            std::to_string(blob_size) + " bytes; try again to resume");
  }
  // The whole blob must match its digest and decrypt, chunk by chunk, to the announced size
  // before it is kept. The plaintext goes nowhere.
  SecureBytes key(reinterpret_cast<const uint8_t*>(ptr.key().data()), ptr.key().size());
  Status checked = decrypt_attachment_to(
      partial, [](ByteView) -> Status { return {}; }, key, view_of(ptr.digest()), ptr.size(), {},
      cancel);
  if (!checked.ok()) {
    // A blob that fails its digest will never pass: start from nothing next time.
    if (checked.code() == ErrorCode::kInvalidMessage) fs::remove(partial, ec);
    return std::move(checked).error();
  }
  std::string name = random_name();
  fs::path kept = blobs_dir() / name;
  SOTTO_TRY(make_folder(blobs_dir()));
  fs::rename(partial, kept, ec);
  if (ec)
    return make_error(ErrorCode::kStorageIo, "cannot move the downloaded file into " +
                                                 blobs_dir().string() + ": " + ec.message());
  StoredBlob b{name, bytes_of(ptr.key()), bytes_of(ptr.digest()), ptr.size()};
  bool recorded = false;
  Effects fx;
  Status s = txn([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto now, history.attachments(a.row));
    if (std::none_of(now.begin(), now.end(), [&](const auto& f) { return f.index == a.index; }))
      return {};  // the message was deleted meanwhile
    SOTTO_TRY_ASSIGN(recorded, history.add_attachment_blob(a.row, a.index, b));
    if (recorded) emit_changed(a.row, fx);
    return {};
  });
  if (!s.ok()) {
    // Not recorded (a full disk, say): back where a retry finds it, with nothing to fetch.
    fs::rename(kept, partial, ec);
    return s;
  }
  // Another download of the same file committed first (or the message was deleted
  // meanwhile): that copy stays, this one goes.
  if (!recorded) fs::remove(kept, ec);
  emit(std::move(fx.events));
  return {};
}

// The stored, encrypted copy of an attachment, ready to decrypt: a plain copy from an earlier
// version is encrypted first.
Result<StoredBlob> Client::Impl::stored_blob(ConversationId conversation,
                                             const std::string& message_id, uint32_t index) {
  SOTTO_TRY_ASSIGN(StoredAttachment a, find_attachment(conversation, message_id, index));
  if (!a.blob && !a.local_path.empty()) {
    SOTTO_TRY(encrypt_plain_copy(a.row, a.index));
    SOTTO_TRY_ASSIGN(a, find_attachment(conversation, message_id, index));
  }
  if (!a.blob) return nothing_stored(index, message_id);
  std::error_code ec;
  if (!fs::exists(blobs_dir() / a.blob->name, ec)) {
    Effects fx;
    SOTTO_TRY(txn([&]() -> Status {
      SOTTO_TRY(history.remove_attachment_blob(a.row, a.index));
      emit_changed(a.row, fx);
      return {};
    }));
    emit(std::move(fx.events));
    return make_error(ErrorCode::kNotFound,
                      "the encrypted copy of this file is missing from the profile; download it "
                      "again with download_attachment()");
  }
  a.blob->name = platform::to_utf8(blobs_dir() / a.blob->name);
  return std::move(*a.blob);
}

// A stored copy that fails its check was altered or damaged on this disk: forgotten, so that
// download_attachment() fetches it again.
Status Client::Impl::forget_damaged(ConversationId conversation, const std::string& message_id,
                                    uint32_t index, Error error) {
  auto a = find_attachment(conversation, message_id, index);
  if (a.ok() && a->blob) {
    Effects fx;
    Status s = txn([&]() -> Status {
      SOTTO_TRY(history.remove_attachment_blob(a->row, a->index));
      emit_changed(a->row, fx);
      return {};
    });
    if (s.ok()) {
      remove_files({StoredAttachment{a->row, a->index, {}, {}, a->blob}});
      emit(std::move(fx.events));
    }
  }
  error.message = "the copy of this file in the profile is damaged (" + error.message +
                  "); download it again with download_attachment()";
  return error;
}

Status Client::Impl::save_attachment(ConversationId conversation, const std::string& message_id,
                                     uint32_t index, const fs::path& destination,
                                     const TransferProgress& progress,
                                     const std::atomic<bool>* cancel) {
  if (destination.empty() || !destination.has_filename())
    return make_error(ErrorCode::kInvalidArgument,
                      "no file to save to: give a path that ends in a file name");
  if (is_within(destination, profile->directory()))
    return make_error(ErrorCode::kInvalidArgument,
                      "cannot save " + destination.string() +
                          " inside the profile directory, which keeps files only encrypted; "
                          "choose a place outside it");
  std::error_code ec;
  fs::path folder = fs::absolute(destination, ec).parent_path();
  if (!fs::is_directory(folder, ec))
    return make_error(ErrorCode::kNotFound, "the folder " + folder.string() +
                                                " does not exist; create it or choose another");
  if (fs::is_directory(destination, ec))
    return make_error(ErrorCode::kInvalidArgument,
                      destination.string() + " is a folder; give the path of a file in it");
  // A name another system allowed may not be one here (Windows refuses "CON" and "a:b").
  SOTTO_TRY(platform::check_file_name(destination.filename()));
  SOTTO_TRY_ASSIGN(StoredBlob b, stored_blob(conversation, message_id, index));
  SecureBytes key(b.key.data(), b.key.size());
  Status s = decrypt_attachment(platform::from_utf8(b.name), destination, key, b.digest, b.size,
                                progress, cancel);
  if (s.code() == ErrorCode::kInvalidMessage)
    return forget_damaged(conversation, message_id, index, std::move(s).error());
  return s;
}

Result<Bytes> Client::Impl::read_attachment(ConversationId conversation,
                                            const std::string& message_id, uint32_t index,
                                            uint64_t max_bytes) {
  SOTTO_TRY_ASSIGN(StoredBlob b, stored_blob(conversation, message_id, index));
  if (b.size > max_bytes)
    return make_error(ErrorCode::kTooLarge,
                      "the file is " + std::to_string(b.size) + " bytes, more than the " +
                          std::to_string(max_bytes) +
                          " asked for; use save_attachment() for files this large");
  Bytes out;
  out.reserve(static_cast<size_t>(b.size));
  SecureBytes key(b.key.data(), b.key.size());
  Status s = decrypt_attachment_to(
      platform::from_utf8(b.name),
      [&](ByteView chunk) -> Status {
        out.insert(out.end(), chunk.begin(), chunk.end());
        return {};
      },
      key, b.digest, b.size);
  if (s.code() == ErrorCode::kInvalidMessage)
    return forget_damaged(conversation, message_id, index, std::move(s).error()).error();
  SOTTO_TRY(s);
  return out;
}

}  // namespace sotto
