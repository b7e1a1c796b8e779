// sotto::Client, files (protocol.md 14.8 and 11.1): encrypted on this device with a random
// key, uploaded as an opaque blob, and referenced from an end-to-end encrypted message that
// carries the key and the blob's digest. Downloads resume, and nothing is decrypted before
// the whole blob matches its digest.
#include <cstring>
#include <fstream>

#include "AttachmentCipher.h"
#include "ClientImpl.h"

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

}  // namespace

fs::path Client::Impl::attachments_dir() const { return profile->directory() / "attachments"; }

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

  fs::create_directories(attachments_dir() / "tmp", ec);
  Bytes tmp_name(16);
  randombytes_buf(tmp_name.data(), tmp_name.size());
  fs::path blob = attachments_dir() / "tmp" / (to_hex(tmp_name) + ".blob");
  struct Remove {
    fs::path p;
    ~Remove() {
      std::error_code e;
      fs::remove(p, e);
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
      file_options.file_name.empty() ? file.filename().string() : file_options.file_name;
  ptr.set_file_name(safe_name(name));
  auto [w, h] = file_options.width ? std::make_pair(file_options.width, file_options.height)
                                   : image_size(file);
  ptr.set_width(w);
  ptr.set_height(h);
  ptr.set_thumbnail(str_of(file_options.thumbnail));
  ptr.set_uploaded_at_ms(t);

  // This device shows the file from a copy of its own.
  fs::path dir = attachments_dir() / std::to_string(conversation);
  fs::create_directories(dir, ec);
  fs::path local = dir / (to_hex(id).substr(0, 12) + "-" + ptr.file_name());
  fs::copy_file(file, local, fs::copy_options::overwrite_existing, ec);
  if (ec) local.clear();

  Outgoing out;
  out.dm.set_message_id(str_of(id));
  out.dm.set_timestamp_ms(t);
  out.dm.set_text(file_options.caption);
  *out.dm.add_attachments() = ptr;
  out.files.emplace_back(ptr, local.string());
  return queue_data(conversation, std::move(out));
}

Result<fs::path> Client::Impl::download_attachment(ConversationId conversation,
                                                   const std::string& message_id, uint32_t index,
                                                   const TransferProgress& progress,
                                                   const std::atomic<bool>* cancel) {
  SOTTO_TRY_ASSIGN(Bytes id, parse_message_id(message_id));
  SOTTO_TRY(registered_account());
  int64_t row = 0;
  content::AttachmentPointer ptr;
  std::string local;
  SOTTO_TRY(locked([&]() -> Status {
    SOTTO_TRY_ASSIGN(auto m, history.find_in_conversation(conversation, id));
    if (!m) return make_error(ErrorCode::kNotFound, "no message " + message_id + " there");
    row = m->row;
    SOTTO_TRY_ASSIGN(auto files, history.attachments(row));
    for (const auto& f : files) {
      if (f.index != index) continue;
      if (!ptr.ParseFromArray(f.pointer.data(), static_cast<int>(f.pointer.size())))
        return make_error(ErrorCode::kStorageCorrupt, "the stored attachment does not parse");
      local = f.local_path;
      return {};
    }
    return make_error(ErrorCode::kNotFound, "that message has no attachment " +
                                                std::to_string(index) +
                                                (m->message.deleted ? " (it was deleted)" : ""));
  }));
  std::error_code ec;
  if (!local.empty() && fs::exists(local, ec)) return fs::path(local);
  if (ptr.key().size() != 32 || ptr.digest().size() != 32 || ptr.id().empty() ||
      ptr.id().find_first_not_of("0123456789abcdef") != std::string::npos)
    return make_error(ErrorCode::kInvalidMessage, "the attachment's description is damaged");

  fs::create_directories(attachments_dir() / "partial", ec);
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
  fs::path dir = attachments_dir() / std::to_string(conversation);
  fs::create_directories(dir, ec);
  fs::path dest = dir / (message_id.substr(0, 12) + "-" + safe_name(ptr.file_name()));
  SecureBytes key(reinterpret_cast<const uint8_t*>(ptr.key().data()), ptr.key().size());
  Status opened =
      decrypt_attachment(partial, dest, key, view_of(ptr.digest()), ptr.size(), {}, cancel);
  if (!opened.ok()) {
    // A blob that fails its digest will never pass: start from nothing next time.
    if (opened.code() == ErrorCode::kInvalidMessage) fs::remove(partial, ec);
    return std::move(opened).error();
  }
  fs::remove(partial, ec);
  Effects fx;
  SOTTO_TRY(txn([&]() -> Status {
    SOTTO_TRY(history.set_attachment_path(row, index, dest.string()));
    emit_changed(row, fx);
    return {};
  }));
  emit(std::move(fx.events));
  return dest;
}

}  // namespace sotto
