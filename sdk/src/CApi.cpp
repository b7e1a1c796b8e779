// The C API (sotto.h) over sotto::Client.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "platform/Platform.h"
#include "sotto.h"
#include "sotto/Client.h"

namespace {

thread_local std::string g_last_error;

void set_error(sotto_error* out, sotto::ErrorCode code, const std::string& message) {
  g_last_error = message;
  if (out) *out = static_cast<sotto_error>(code);
}

void ok(sotto_error* out) {
  g_last_error.clear();
  if (out) *out = SOTTO_OK;
}

template <class T>
bool fail_if(const sotto::Result<T>& r, sotto_error* error) {
  if (r.ok()) return false;
  set_error(error, r.error().code, r.error().message);
  return true;
}

bool null_arg(sotto_error* error, const char* what) {
  set_error(error, sotto::ErrorCode::kInvalidArgument, std::string(what) + " is NULL");
  return false;
}

// Every C function's body is a function-try-block ending here: no exception (out of memory in
// a std::string, a bug) crosses into C, where it would abort the app. It becomes
// SOTTO_ERR_INTERNAL with what is known about it.
void caught(sotto_error* error) noexcept {
  const char* what = "an unexpected exception inside the SDK";
  try {
    throw;
  } catch (const std::bad_alloc&) {
    what = "out of memory";
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  try {
    set_error(error, sotto::ErrorCode::kInternal, std::string("internal error: ") + what);
  } catch (...) {
    if (error) *error = SOTTO_ERR_INTERNAL;  // no memory even for the message
  }
}

void copy_to(char* dst, size_t cap, const std::string& src) {
  size_t n = std::min(cap - 1, src.size());
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

char* dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// Fills a C message; its strings are owned by the caller of fill (freed with free_message).
void fill(sotto_message& out, const sotto::Message& m) {
  out.id = dup(m.id);
  out.conversation = m.conversation;
  out.sender = dup(m.sender);
  out.sender_device = m.sender_device;
  out.outgoing = m.outgoing;
  out.kind = static_cast<sotto_message_kind>(m.kind);
  out.text = dup(m.text);
  out.sent_ms = m.sent_ms;
  out.sort_ms = m.sort_ms;
  out.status = static_cast<sotto_message_status>(m.status);
  out.recipients = m.recipients;
  out.delivered_to = m.delivered_to;
  out.read_by = m.read_by;
  out.edited_ms = m.edited_ms;
  out.deleted = m.deleted;
  out.expire_timer_s = m.expire_timer_s;
  out.expires_ms = m.expires_ms;
  out.group_revision = m.group_revision;
  out.attachment_count = m.attachments.size();
  out.attachments = nullptr;
  if (!m.attachments.empty()) {
    auto* a =
        static_cast<sotto_attachment*>(std::calloc(m.attachments.size(), sizeof(sotto_attachment)));
    for (size_t i = 0; a && i < m.attachments.size(); ++i) {
      const auto& src = m.attachments[i];
      a[i].file_name = dup(src.file_name);
      a[i].content_type = dup(src.content_type);
      a[i].size = src.size;
      a[i].width = src.width;
      a[i].height = src.height;
      a[i].thumbnail_size = src.thumbnail.size();
      if (!src.thumbnail.empty()) {
        auto* t = static_cast<uint8_t*>(std::malloc(src.thumbnail.size()));
        if (t) std::memcpy(t, src.thumbnail.data(), src.thumbnail.size());
        a[i].thumbnail = t;
      }
      a[i].stored = src.stored;
    }
    out.attachments = a;
    if (!a) out.attachment_count = 0;
  }
}

void free_message(sotto_message& m) {
  std::free(const_cast<char*>(m.id));
  std::free(const_cast<char*>(m.sender));
  std::free(const_cast<char*>(m.text));
  for (size_t i = 0; i < m.attachment_count; ++i) {
    const auto& a = m.attachments[i];
    std::free(const_cast<char*>(a.file_name));
    std::free(const_cast<char*>(a.content_type));
    std::free(const_cast<uint8_t*>(a.thumbnail));
  }
  std::free(const_cast<sotto_attachment*>(m.attachments));
}

std::vector<std::string> accounts_of(const char* const* accounts, size_t n) {
  std::vector<std::string> out;
  for (size_t i = 0; accounts && i < n; ++i)
    if (accounts[i]) out.emplace_back(accounts[i]);
  return out;
}

// A C progress callback that can cancel, as a C++ progress callback and a cancel flag.
struct Transfer {
  sotto_progress_fn fn;
  void* user_data;
  std::atomic<bool> cancel{false};
  sotto::TransferProgress progress() {
    if (!fn) return {};
    return [this](uint64_t done, uint64_t total) {
      if (!fn(user_data, done, total)) cancel = true;
    };
  }
};

// A list of `n` zeroed items (a C list type with `items` and `count`), or NULL with the error
// set when memory runs out.
template <class List>
List* new_list(size_t n, sotto_error* error) {
  auto* list = static_cast<List*>(std::calloc(1, sizeof(List)));
  using Item = std::remove_pointer_t<decltype(list->items)>;
  if (list) list->items = static_cast<Item*>(std::calloc(n ? n : 1, sizeof(Item)));
  if (!list || !list->items) {
    std::free(list);
    set_error(error, sotto::ErrorCode::kInternal, "out of memory");
    return nullptr;
  }
  list->count = n;
  return list;
}

void fill_account(sotto_account* out, const sotto::AccountInfo& a) {
  if (!out) return;
  copy_to(out->account, sizeof out->account, a.account);
  out->device_id = a.device_id;
  copy_to(out->handle, sizeof out->handle, a.handle);
}

// Calls C callbacks from the C++ listener.
class CListener final : public sotto::ClientListener {
 public:
  void set(const sotto_callbacks* cb) {
    std::lock_guard lock(mu_);
    if (cb)
      cb_ = *cb;
    else
      cb_ = sotto_callbacks{};
  }
  void on_message(const sotto::Message& m) override {
    auto cb = get();
    if (!cb.on_message) return;
    sotto_message c{};
    fill(c, m);
    cb.on_message(cb.user_data, &c);
    free_message(c);
  }
  void on_message_changed(const sotto::Message& m) override {
    auto cb = get();
    if (!cb.on_message_changed) return;
    sotto_message c{};
    fill(c, m);
    cb.on_message_changed(cb.user_data, &c);
    free_message(c);
  }
  void on_message_removed(sotto::ConversationId conversation, const std::string& id) override {
    auto cb = get();
    if (cb.on_message_removed) cb.on_message_removed(cb.user_data, conversation, id.c_str());
  }
  void on_conversation_changed(sotto::ConversationId conversation) override {
    auto cb = get();
    if (cb.on_conversation_changed) cb.on_conversation_changed(cb.user_data, conversation);
  }
  void on_typing(sotto::ConversationId conversation, const std::string& account,
                 bool typing) override {
    auto cb = get();
    if (cb.on_typing) cb.on_typing(cb.user_data, conversation, account.c_str(), typing);
  }
  void on_presence(const std::string& account, bool online, uint64_t last_seen_ms) override {
    auto cb = get();
    if (cb.on_presence) cb.on_presence(cb.user_data, account.c_str(), online, last_seen_ms);
  }
  void on_message_status(sotto::ConversationId conversation, const std::string& id,
                         sotto::MessageStatus status) override {
    auto cb = get();
    if (cb.on_message_status)
      cb.on_message_status(cb.user_data, conversation, id.c_str(),
                           static_cast<sotto_message_status>(status));
  }
  void on_receipt(sotto::ConversationId conversation, const std::string& id,
                  const sotto::Receipt& r) override {
    auto cb = get();
    if (cb.on_receipt)
      cb.on_receipt(cb.user_data, conversation, id.c_str(), r.account.c_str(),
                    static_cast<sotto_message_status>(r.status), r.at_ms);
  }
  void on_connection_state(sotto::ConnectionState s, const std::string& detail) override {
    auto cb = get();
    if (cb.on_connection_state)
      cb.on_connection_state(cb.user_data, static_cast<sotto_connection_state>(s), detail.c_str());
  }
  void on_identity_changed(const sotto::IdentityChange& c) override {
    auto cb = get();
    if (cb.on_identity_changed)
      cb.on_identity_changed(cb.user_data, c.account.c_str(), c.handle.c_str(),
                             c.safety_number.digits.c_str());
  }
  void on_devices_changed() override {
    auto cb = get();
    if (cb.on_devices_changed) cb.on_devices_changed(cb.user_data);
  }

 private:
  sotto_callbacks get() {
    std::lock_guard lock(mu_);
    return cb_;
  }
  std::mutex mu_;
  sotto_callbacks cb_{};
};

}  // namespace

struct sotto_client {
  std::unique_ptr<sotto::Client> client;
  std::shared_ptr<CListener> listener = std::make_shared<CListener>();
};

extern "C" {

const char* sotto_error_string(void) { return g_last_error.c_str(); }

const char* sotto_error_name(sotto_error code) try {
  static thread_local std::string name;
  name = std::string(sotto::error_code_name(static_cast<sotto::ErrorCode>(code)));
  return name.c_str();
} catch (...) {
  return caught(nullptr), nullptr;
}

sotto_client* sotto_client_open(const char* directory, const char* passphrase, const uint8_t* key,
                                const sotto_options* options, sotto_error* error) try {
  if (!directory) return null_arg(error, "directory"), nullptr;
  if (!passphrase == !key) {
    set_error(error, sotto::ErrorCode::kInvalidArgument,
              "give either a passphrase or a 32-byte key, not both and not neither");
    return nullptr;
  }
  sotto::ClientOptions o;
  if (options && options->relay_url) o.relay_url = options->relay_url;
  if (options && options->device_name) o.device_name = options->device_name;
  if (options) {
    using ms = std::chrono::milliseconds;
    o.dangerously_allow_plaintext_relay = options->dangerously_allow_plaintext_relay;
    if (options->receipt_delay_ms) o.receipt_delay = ms(options->receipt_delay_ms);
    if (options->backoff_initial_ms) o.backoff_initial = ms(options->backoff_initial_ms);
    if (options->backoff_max_ms) o.backoff_max = ms(options->backoff_max_ms);
    if (options->request_timeout_ms) o.request_timeout = ms(options->request_timeout_ms);
    if (options->log)
      o.log = [fn = options->log, data = options->log_user_data](const std::string& line) {
        fn(data, line.c_str());
      };
  }
  sotto::Result<std::unique_ptr<sotto::Profile>> profile =
      passphrase ? sotto::Profile::open(sotto::platform::from_utf8(directory),
                                        sotto::SecureBytes::from_string(passphrase))
                 : sotto::Profile::open_with_key(sotto::platform::from_utf8(directory),
                                                 sotto::SecureBytes(key, 32));
  if (fail_if(profile, error)) return nullptr;
  auto client = sotto::Client::create(std::move(*profile), std::move(o));
  if (fail_if(client, error)) return nullptr;
  auto* out = new (std::nothrow) sotto_client;
  if (!out) {
    set_error(error, sotto::ErrorCode::kInternal, "out of memory");
    return nullptr;
  }
  out->client = std::move(*client);
  out->client->set_listener(out->listener);
  ok(error);
  return out;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_client_close(sotto_client* client) { delete client; }

void sotto_client_set_callbacks(sotto_client* client, const sotto_callbacks* callbacks) try {
  if (client) client->listener->set(callbacks);
} catch (...) {
  caught(nullptr);
}

#define SOTTO_CHECK_CLIENT(ret) \
  if (!client) return null_arg(error, "client"), ret

// A call that returns only a Status.
#define SOTTO_STATUS_CALL(expr)           \
  do {                                    \
    auto r_ = (expr);                     \
    if (fail_if(r_, error)) return false; \
    ok(error);                            \
    return true;                          \
  } while (0)

bool sotto_register(sotto_client* client, const char* handle, sotto_account* out,
                    sotto_error* error) try {
  return sotto_register_with_invite(client, handle, "", out, error);
} catch (...) {
  return caught(error), false;
}

bool sotto_register_with_invite(sotto_client* client, const char* handle, const char* invite,
                                sotto_account* out, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!handle) return null_arg(error, "handle");
  if (!invite) return null_arg(error, "invite");
  auto r = client->client->register_account(handle, invite);
  if (fail_if(r, error)) return false;
  fill_account(out, *r);
  ok(error);
  return true;
} catch (...) {
  return caught(error), false;
}

bool sotto_account_info(sotto_client* client, sotto_account* out, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  auto r = client->client->account();
  if (fail_if(r, error)) return false;
  fill_account(out, *r);
  ok(error);
  return true;
} catch (...) {
  return caught(error), false;
}

bool sotto_link_start(sotto_client* client, sotto_link_invite* out, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!out) return null_arg(error, "out");
  auto r = client->client->start_link();
  if (fail_if(r, error)) return false;
  copy_to(out->code, sizeof out->code, r->code);
  copy_to(out->text, sizeof out->text, r->text);
  copy_to(out->uri, sizeof out->uri, r->uri);
  out->expires_ms = r->expires_ms;
  ok(error);
  return true;
} catch (...) {
  return caught(error), false;
}

bool sotto_link_finish(sotto_client* client, uint32_t timeout_ms, sotto_account* out,
                       sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  auto r = client->client->finish_link(std::chrono::milliseconds(timeout_ms));
  if (fail_if(r, error)) return false;
  fill_account(out, *r);
  ok(error);
  return true;
} catch (...) {
  return caught(error), false;
}

bool sotto_link_approve(sotto_client* client, const char* invite, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!invite) return null_arg(error, "invite");
  SOTTO_STATUS_CALL(client->client->approve_link(invite));
} catch (...) {
  return caught(error), false;
}

sotto_device_list* sotto_devices(sotto_client* client, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(nullptr);
  auto r = client->client->devices();
  if (fail_if(r, error)) return nullptr;
  auto* list = new_list<sotto_device_list>(r->size(), error);
  if (!list) return nullptr;
  for (size_t i = 0; i < r->size(); ++i) {
    const auto& d = (*r)[i];
    auto& o = list->items[i];
    o.device_id = d.device_id;
    o.name = dup(d.name);
    o.created_ms = d.created_ms;
    o.last_seen_ms = d.last_seen_ms;
    o.connected = d.connected;
    o.this_device = d.this_device;
  }
  ok(error);
  return list;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_device_list_free(sotto_device_list* list) try {
  if (!list) return;
  for (size_t i = 0; i < list->count; ++i) std::free(const_cast<char*>(list->items[i].name));
  std::free(list->items);
  std::free(list);
} catch (...) {
  caught(nullptr);
}

bool sotto_remove_device(sotto_client* client, uint32_t device_id, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(client->client->remove_device(device_id));
} catch (...) {
  return caught(error), false;
}

bool sotto_unlink_this_device(sotto_client* client, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(client->client->unlink_this_device());
} catch (...) {
  return caught(error), false;
}

bool sotto_delete_account(sotto_client* client, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(client->client->delete_account());
} catch (...) {
  return caught(error), false;
}

bool sotto_change_passphrase(sotto_client* client, const char* new_passphrase,
                             sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!new_passphrase) return null_arg(error, "new_passphrase");
  SOTTO_STATUS_CALL(
      client->client->profile().change_passphrase(sotto::SecureBytes::from_string(new_passphrase)));
} catch (...) {
  return caught(error), false;
}

bool sotto_profile_erase(const char* directory, sotto_error* error) try {
  if (!directory) return null_arg(error, "directory");
  SOTTO_STATUS_CALL(sotto::Profile::erase(sotto::platform::from_utf8(directory)));
} catch (...) {
  return caught(error), false;
}

bool sotto_connect(sotto_client* client, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(client->client->connect());
} catch (...) {
  return caught(error), false;
}

void sotto_disconnect(sotto_client* client) try {
  if (client) client->client->disconnect();
} catch (...) {
  caught(nullptr);
}

sotto_connection_state sotto_connection(sotto_client* client) try {
  if (!client) return SOTTO_OFFLINE;
  return static_cast<sotto_connection_state>(client->client->connection_state());
} catch (...) {
  return caught(nullptr), SOTTO_OFFLINE;
}

bool sotto_wait_online(sotto_client* client, uint32_t timeout_ms) try {
  return client && client->client->wait_online(std::chrono::milliseconds(timeout_ms));
} catch (...) {
  return caught(nullptr), false;
}

bool sotto_add_contact(sotto_client* client, const char* handle, char* account_out,
                       sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!handle) return null_arg(error, "handle");
  auto r = client->client->add_contact(handle);
  if (fail_if(r, error)) return false;
  if (account_out) copy_to(account_out, SOTTO_ACCOUNT_ID_LEN, r->account);
  ok(error);
  return true;
} catch (...) {
  return caught(error), false;
}

int64_t sotto_direct_conversation(sotto_client* client, const char* account,
                                  sotto_error* error) try {
  SOTTO_CHECK_CLIENT(-1);
  if (!account) return null_arg(error, "account"), -1;
  auto r = client->client->direct_conversation(account);
  if (fail_if(r, error)) return -1;
  ok(error);
  return *r;
} catch (...) {
  return caught(error), -1;
}

sotto_conversation_list* sotto_conversations(sotto_client* client, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(nullptr);
  auto r = client->client->conversations();
  if (fail_if(r, error)) return nullptr;
  auto* list = new_list<sotto_conversation_list>(r->size(), error);
  if (!list) return nullptr;
  for (size_t i = 0; i < r->size(); ++i) {
    const auto& c = (*r)[i];
    auto& o = list->items[i];
    o.id = c.id;
    o.kind = static_cast<int>(c.kind);
    o.peer = dup(c.peer);
    o.title = dup(c.title);
    o.unread = c.unread;
    o.last_activity_ms = c.last_activity_ms;
    o.has_last_message = c.last_message.has_value();
    if (c.last_message) fill(o.last_message, *c.last_message);
  }
  ok(error);
  return list;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_conversation_list_free(sotto_conversation_list* list) try {
  if (!list) return;
  for (size_t i = 0; i < list->count; ++i) {
    std::free(const_cast<char*>(list->items[i].peer));
    std::free(const_cast<char*>(list->items[i].title));
    if (list->items[i].has_last_message) free_message(list->items[i].last_message);
  }
  std::free(list->items);
  std::free(list);
} catch (...) {
  caught(nullptr);
}

sotto_contact_list* sotto_contacts(sotto_client* client, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(nullptr);
  auto r = client->client->contacts();
  if (fail_if(r, error)) return nullptr;
  auto* list = new_list<sotto_contact_list>(r->size(), error);
  if (!list) return nullptr;
  for (size_t i = 0; i < r->size(); ++i) {
    list->items[i].account = dup((*r)[i].account);
    list->items[i].handle = dup((*r)[i].handle);
  }
  ok(error);
  return list;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_contact_list_free(sotto_contact_list* list) try {
  if (!list) return;
  for (size_t i = 0; i < list->count; ++i) {
    std::free(const_cast<char*>(list->items[i].account));
    std::free(const_cast<char*>(list->items[i].handle));
  }
  std::free(list->items);
  std::free(list);
} catch (...) {
  caught(nullptr);
}

bool sotto_send_text(sotto_client* client, int64_t conversation, const char* text, char* id_out,
                     sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!text) return null_arg(error, "text");
  auto r = client->client->send_text(conversation, text);
  if (fail_if(r, error)) return false;
  if (id_out) copy_to(id_out, SOTTO_MESSAGE_ID_LEN, *r);
  ok(error);
  return true;
} catch (...) {
  return caught(error), false;
}

sotto_message_list* sotto_messages(sotto_client* client, int64_t conversation, const char* cursor,
                                   uint32_t limit, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(nullptr);
  auto r = client->client->messages(conversation, cursor ? cursor : "", limit);
  if (fail_if(r, error)) return nullptr;
  auto* list = new_list<sotto_message_list>(r->messages.size(), error);
  if (!list) return nullptr;
  for (size_t i = 0; i < list->count; ++i) fill(list->items[i], r->messages[i]);
  list->next_cursor = dup(r->next_cursor);
  ok(error);
  return list;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_message_list_free(sotto_message_list* list) try {
  if (!list) return;
  for (size_t i = 0; i < list->count; ++i) free_message(list->items[i]);
  std::free(list->items);
  std::free(const_cast<char*>(list->next_cursor));
  std::free(list);
} catch (...) {
  caught(nullptr);
}

sotto_message* sotto_message_get(sotto_client* client, int64_t conversation, const char* message_id,
                                 sotto_error* error) try {
  SOTTO_CHECK_CLIENT(nullptr);
  if (!message_id) return null_arg(error, "message_id"), nullptr;
  auto r = client->client->message(conversation, message_id);
  if (fail_if(r, error)) return nullptr;
  auto* m = static_cast<sotto_message*>(std::calloc(1, sizeof(sotto_message)));
  if (!m) return set_error(error, sotto::ErrorCode::kInternal, "out of memory"), nullptr;
  fill(*m, *r);
  ok(error);
  return m;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_message_free(sotto_message* message) try {
  if (!message) return;
  free_message(*message);
  std::free(message);
} catch (...) {
  caught(nullptr);
}

sotto_receipt_list* sotto_receipts(sotto_client* client, int64_t conversation,
                                   const char* message_id, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(nullptr);
  if (!message_id) return null_arg(error, "message_id"), nullptr;
  auto r = client->client->receipts(conversation, message_id);
  if (fail_if(r, error)) return nullptr;
  auto* list = new_list<sotto_receipt_list>(r->size(), error);
  if (!list) return nullptr;
  for (size_t i = 0; i < r->size(); ++i) {
    list->items[i].account = dup((*r)[i].account);
    list->items[i].status = static_cast<sotto_message_status>((*r)[i].status);
    list->items[i].at_ms = (*r)[i].at_ms;
  }
  ok(error);
  return list;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_receipt_list_free(sotto_receipt_list* list) try {
  if (!list) return;
  for (size_t i = 0; i < list->count; ++i) std::free(const_cast<char*>(list->items[i].account));
  std::free(list->items);
  std::free(list);
} catch (...) {
  caught(nullptr);
}

bool sotto_set_read_receipts(sotto_client* client, bool enabled, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(client->client->set_read_receipts(enabled));
} catch (...) {
  return caught(error), false;
}

bool sotto_mark_read(sotto_client* client, int64_t conversation, const char* up_to,
                     sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!up_to) return null_arg(error, "up_to_message_id");
  SOTTO_STATUS_CALL(client->client->mark_read(conversation, up_to));
} catch (...) {
  return caught(error), false;
}

bool sotto_edit_message(sotto_client* client, int64_t conversation, const char* message_id,
                        const char* new_text, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!message_id || !new_text) return null_arg(error, !message_id ? "message_id" : "new_text");
  SOTTO_STATUS_CALL(client->client->edit_message(conversation, message_id, new_text));
} catch (...) {
  return caught(error), false;
}

bool sotto_delete_for_everyone(sotto_client* client, int64_t conversation, const char* message_id,
                               sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!message_id) return null_arg(error, "message_id");
  SOTTO_STATUS_CALL(client->client->delete_for_everyone(conversation, message_id));
} catch (...) {
  return caught(error), false;
}

bool sotto_set_disappearing_timer(sotto_client* client, int64_t conversation, uint32_t seconds,
                                  sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(client->client->set_disappearing_timer(conversation, seconds));
} catch (...) {
  return caught(error), false;
}

bool sotto_send_file(sotto_client* client, int64_t conversation, const char* path,
                     const sotto_file_options* options, sotto_progress_fn progress, void* user_data,
                     char* id_out, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!path) return null_arg(error, "path");
  sotto::FileOptions o;
  if (options) {
    if (options->caption) o.caption = options->caption;
    if (options->content_type) o.content_type = options->content_type;
    if (options->file_name) o.file_name = options->file_name;
    o.width = options->width;
    o.height = options->height;
    if (options->thumbnail && options->thumbnail_size)
      o.thumbnail.assign(options->thumbnail, options->thumbnail + options->thumbnail_size);
  }
  Transfer t{progress, user_data};
  auto r = client->client->send_file(conversation, sotto::platform::from_utf8(path), o,
                                     t.progress(), &t.cancel);
  if (fail_if(r, error)) return false;
  if (id_out) copy_to(id_out, SOTTO_MESSAGE_ID_LEN, *r);
  ok(error);
  return true;
} catch (...) {
  return caught(error), false;
}

bool sotto_download_attachment(sotto_client* client, int64_t conversation, const char* message_id,
                               uint32_t index, sotto_progress_fn progress, void* user_data,
                               sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!message_id) return null_arg(error, "message_id");
  Transfer t{progress, user_data};
  auto r =
      client->client->download_attachment(conversation, message_id, index, t.progress(), &t.cancel);
  if (fail_if(r, error)) return false;
  ok(error);
  return true;
} catch (...) {
  return caught(error), false;
}

bool sotto_save_attachment(sotto_client* client, int64_t conversation, const char* message_id,
                           uint32_t index, const char* destination, sotto_progress_fn progress,
                           void* user_data, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!message_id || !destination)
    return null_arg(error, !message_id ? "message_id" : "destination");
  Transfer t{progress, user_data};
  SOTTO_STATUS_CALL(client->client->save_attachment(conversation, message_id, index,
                                                    sotto::platform::from_utf8(destination),
                                                    t.progress(), &t.cancel));
} catch (...) {
  return caught(error), false;
}

uint8_t* sotto_read_attachment(sotto_client* client, int64_t conversation, const char* message_id,
                               uint32_t index, uint64_t max_bytes, size_t* size_out,
                               sotto_error* error) try {
  SOTTO_CHECK_CLIENT(nullptr);
  if (!message_id || !size_out)
    return null_arg(error, !message_id ? "message_id" : "size_out"), nullptr;
  auto r = client->client->read_attachment(conversation, message_id, index, max_bytes);
  if (fail_if(r, error)) return nullptr;
  // malloc(0) may return NULL, which would read as a failure.
  auto* out = static_cast<uint8_t*>(std::malloc(r->empty() ? 1 : r->size()));
  if (!out) return set_error(error, sotto::ErrorCode::kInternal, "out of memory"), nullptr;
  if (!r->empty()) std::memcpy(out, r->data(), r->size());
  *size_out = r->size();
  ok(error);
  return out;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_bytes_free(uint8_t* bytes) { std::free(bytes); }

void sotto_string_free(char* s) { std::free(s); }

int64_t sotto_create_group(sotto_client* client, const char* name, const char* const* accounts,
                           size_t account_count, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(-1);
  if (!name) return null_arg(error, "name"), -1;
  auto r = client->client->create_group(name, accounts_of(accounts, account_count));
  if (fail_if(r, error)) return -1;
  ok(error);
  return *r;
} catch (...) {
  return caught(error), -1;
}

sotto_group* sotto_group_info(sotto_client* client, int64_t conversation, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(nullptr);
  auto r = client->client->group(conversation);
  if (fail_if(r, error)) return nullptr;
  auto* g = static_cast<sotto_group*>(std::calloc(1, sizeof(sotto_group)));
  if (!g) return set_error(error, sotto::ErrorCode::kInternal, "out of memory"), nullptr;
  g->conversation = r->conversation;
  g->group_id = dup(r->group_id);
  g->name = dup(r->name);
  g->revision = r->revision;
  g->is_member = r->is_member;
  g->is_admin = r->is_admin;
  auto* members = static_cast<sotto_group_member*>(
      std::calloc(r->members.size() ? r->members.size() : 1, sizeof(sotto_group_member)));
  g->member_count = members ? r->members.size() : 0;
  for (size_t i = 0; i < g->member_count; ++i) {
    members[i].account = dup(r->members[i].account);
    members[i].handle = dup(r->members[i].handle);
    members[i].admin = r->members[i].admin;
  }
  g->members = members;
  ok(error);
  return g;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_group_free(sotto_group* g) try {
  if (!g) return;
  for (size_t i = 0; i < g->member_count; ++i) {
    std::free(const_cast<char*>(g->members[i].account));
    std::free(const_cast<char*>(g->members[i].handle));
  }
  std::free(const_cast<sotto_group_member*>(g->members));
  std::free(const_cast<char*>(g->group_id));
  std::free(const_cast<char*>(g->name));
  std::free(g);
} catch (...) {
  caught(nullptr);
}

bool sotto_add_group_members(sotto_client* client, int64_t conversation,
                             const char* const* accounts, size_t account_count,
                             sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(
      client->client->add_group_members(conversation, accounts_of(accounts, account_count)));
} catch (...) {
  return caught(error), false;
}

bool sotto_remove_group_members(sotto_client* client, int64_t conversation,
                                const char* const* accounts, size_t account_count,
                                sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(
      client->client->remove_group_members(conversation, accounts_of(accounts, account_count)));
} catch (...) {
  return caught(error), false;
}

bool sotto_rename_group(sotto_client* client, int64_t conversation, const char* name,
                        sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!name) return null_arg(error, "name");
  SOTTO_STATUS_CALL(client->client->rename_group(conversation, name));
} catch (...) {
  return caught(error), false;
}

bool sotto_set_group_admin(sotto_client* client, int64_t conversation, const char* account,
                           bool admin, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!account) return null_arg(error, "account");
  SOTTO_STATUS_CALL(client->client->set_group_admin(conversation, account, admin));
} catch (...) {
  return caught(error), false;
}

bool sotto_leave_group(sotto_client* client, int64_t conversation, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(client->client->leave_group(conversation));
} catch (...) {
  return caught(error), false;
}

bool sotto_set_typing(sotto_client* client, int64_t conversation, bool typing,
                      sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(client->client->set_typing(conversation, typing));
} catch (...) {
  return caught(error), false;
}

bool sotto_watch_presence(sotto_client* client, const int64_t* conversations, size_t count,
                          sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  std::vector<sotto::ConversationId> list;
  for (size_t i = 0; conversations && i < count; ++i) list.push_back(conversations[i]);
  SOTTO_STATUS_CALL(client->client->watch_presence(list));
} catch (...) {
  return caught(error), false;
}

bool sotto_set_presence_hidden(sotto_client* client, bool hidden, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(client->client->set_presence_hidden(hidden));
} catch (...) {
  return caught(error), false;
}

bool sotto_set_push_endpoint(sotto_client* client, const char* url, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  SOTTO_STATUS_CALL(url ? client->client->set_push_endpoint(url)
                        : client->client->clear_push_endpoint());
} catch (...) {
  return caught(error), false;
}

sotto_search_page* sotto_search(sotto_client* client, const sotto_search_query* query,
                                sotto_error* error) try {
  SOTTO_CHECK_CLIENT(nullptr);
  if (!query || !query->text) return null_arg(error, !query ? "query" : "query->text"), nullptr;
  sotto::SearchQuery q;
  q.text = query->text;
  for (size_t i = 0; query->conversations && i < query->conversation_count; ++i)
    q.conversations.push_back(query->conversations[i]);
  q.senders = accounts_of(query->senders, query->sender_count);
  q.since_ms = query->since_ms;
  q.until_ms = query->until_ms;
  q.with_attachments_only = query->with_attachments_only;
  q.order = query->by_relevance ? sotto::SearchOrder::kRelevance : sotto::SearchOrder::kNewest;
  if (query->limit) q.limit = query->limit;
  if (query->cursor) q.cursor = query->cursor;
  auto r = client->client->search(q);
  if (fail_if(r, error)) return nullptr;
  auto* page = static_cast<sotto_search_page*>(std::calloc(1, sizeof(sotto_search_page)));
  if (!page) return set_error(error, sotto::ErrorCode::kInternal, "out of memory"), nullptr;
  auto* hits = static_cast<sotto_search_hit*>(
      std::calloc(r->hits.size() ? r->hits.size() : 1, sizeof(sotto_search_hit)));
  page->count = hits ? r->hits.size() : 0;
  for (size_t i = 0; i < page->count; ++i) {
    const auto& h = r->hits[i];
    hits[i].message_id = dup(h.message_id);
    hits[i].conversation = h.conversation;
    hits[i].sender = dup(h.sender);
    hits[i].sort_ms = h.sort_ms;
    hits[i].snippet = dup(h.snippet);
    hits[i].score = h.score;
    auto* hl = static_cast<sotto_search_highlight*>(
        std::calloc(h.highlights.size() ? h.highlights.size() : 1, sizeof(sotto_search_highlight)));
    hits[i].highlight_count = hl ? h.highlights.size() : 0;
    for (size_t j = 0; j < hits[i].highlight_count; ++j)
      hl[j] = sotto_search_highlight{h.highlights[j].begin, h.highlights[j].end};
    hits[i].highlights = hl;
  }
  page->hits = hits;
  page->next_cursor = dup(r->next_cursor);
  page->index_complete = r->index_complete;
  ok(error);
  return page;
} catch (...) {
  return caught(error), nullptr;
}

void sotto_search_page_free(sotto_search_page* page) try {
  if (!page) return;
  for (size_t i = 0; i < page->count; ++i) {
    std::free(const_cast<char*>(page->hits[i].message_id));
    std::free(const_cast<char*>(page->hits[i].sender));
    std::free(const_cast<char*>(page->hits[i].snippet));
    std::free(const_cast<sotto_search_highlight*>(page->hits[i].highlights));
  }
  std::free(const_cast<sotto_search_hit*>(page->hits));
  std::free(const_cast<char*>(page->next_cursor));
  std::free(page);
} catch (...) {
  caught(nullptr);
}

bool sotto_safety_number(sotto_client* client, const char* account, char* digits_out,
                         sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!account || !digits_out) return null_arg(error, !account ? "account" : "digits_out");
  auto r = client->client->safety_number(account);
  if (fail_if(r, error)) return false;
  copy_to(digits_out, SOTTO_SAFETY_NUMBER_LEN, r->digits);
  ok(error);
  return true;
} catch (...) {
  return caught(error), false;
}

bool sotto_accept_identity(sotto_client* client, const char* account, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!account) return null_arg(error, "account");
  SOTTO_STATUS_CALL(client->client->accept_identity(account));
} catch (...) {
  return caught(error), false;
}

bool sotto_set_verified(sotto_client* client, const char* account, bool verified,
                        sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!account) return null_arg(error, "account");
  SOTTO_STATUS_CALL(client->client->set_verified(account, verified));
} catch (...) {
  return caught(error), false;
}

bool sotto_is_verified(sotto_client* client, const char* account, sotto_error* error) try {
  SOTTO_CHECK_CLIENT(false);
  if (!account) return null_arg(error, "account");
  auto r = client->client->verified(account);
  if (fail_if(r, error)) return false;
  ok(error);
  return *r;
} catch (...) {
  return caught(error), false;
}

}  // extern "C"
