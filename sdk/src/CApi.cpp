// The C API (sotto.h) over sotto::Client.
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

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
}

void free_message(sotto_message& m) {
  std::free(const_cast<char*>(m.id));
  std::free(const_cast<char*>(m.sender));
  std::free(const_cast<char*>(m.text));
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
    sotto_message view{m.id.c_str(),     m.conversation,
                       m.sender.c_str(), m.sender_device,
                       m.outgoing,       static_cast<sotto_message_kind>(m.kind),
                       m.text.c_str(),   m.sent_ms,
                       m.sort_ms,        static_cast<sotto_message_status>(m.status),
                       m.recipients};
    cb.on_message(cb.user_data, &view);
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

const char* sotto_error_name(sotto_error code) {
  static thread_local std::string name;
  name = std::string(sotto::error_code_name(static_cast<sotto::ErrorCode>(code)));
  return name.c_str();
}

sotto_client* sotto_client_open(const char* directory, const char* passphrase, const uint8_t* key,
                                const sotto_options* options, sotto_error* error) {
  if (!directory) return null_arg(error, "directory"), nullptr;
  if (!passphrase == !key) {
    set_error(error, sotto::ErrorCode::kInvalidArgument,
              "give either a passphrase or a 32-byte key, not both and not neither");
    return nullptr;
  }
  sotto::Result<std::unique_ptr<sotto::Profile>> profile =
      passphrase ? sotto::Profile::open(directory, sotto::SecureBytes::from_string(passphrase))
                 : sotto::Profile::open_with_key(directory, sotto::SecureBytes(key, 32));
  if (fail_if(profile, error)) return nullptr;
  sotto::ClientOptions o;
  if (options && options->relay_url) o.relay_url = options->relay_url;
  if (options && options->device_name) o.device_name = options->device_name;
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
}

void sotto_client_close(sotto_client* client) { delete client; }

void sotto_client_set_callbacks(sotto_client* client, const sotto_callbacks* callbacks) {
  if (client) client->listener->set(callbacks);
}

#define SOTTO_CHECK_CLIENT(ret) \
  if (!client) return null_arg(error, "client"), ret

bool sotto_register(sotto_client* client, const char* handle, sotto_account* out,
                    sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  if (!handle) return null_arg(error, "handle");
  auto r = client->client->register_account(handle);
  if (fail_if(r, error)) return false;
  fill_account(out, *r);
  ok(error);
  return true;
}

bool sotto_account_info(sotto_client* client, sotto_account* out, sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  auto r = client->client->account();
  if (fail_if(r, error)) return false;
  fill_account(out, *r);
  ok(error);
  return true;
}

bool sotto_link_start(sotto_client* client, sotto_link_invite* out, sotto_error* error) {
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
}

bool sotto_link_finish(sotto_client* client, uint32_t timeout_ms, sotto_account* out,
                       sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  auto r = client->client->finish_link(std::chrono::milliseconds(timeout_ms));
  if (fail_if(r, error)) return false;
  fill_account(out, *r);
  ok(error);
  return true;
}

bool sotto_link_approve(sotto_client* client, const char* invite, sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  if (!invite) return null_arg(error, "invite");
  auto r = client->client->approve_link(invite);
  if (fail_if(r, error)) return false;
  ok(error);
  return true;
}

bool sotto_connect(sotto_client* client, sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  auto r = client->client->connect();
  if (fail_if(r, error)) return false;
  ok(error);
  return true;
}

void sotto_disconnect(sotto_client* client) {
  if (client) client->client->disconnect();
}

sotto_connection_state sotto_connection(sotto_client* client) {
  if (!client) return SOTTO_OFFLINE;
  return static_cast<sotto_connection_state>(client->client->connection_state());
}

bool sotto_wait_online(sotto_client* client, uint32_t timeout_ms) {
  return client && client->client->wait_online(std::chrono::milliseconds(timeout_ms));
}

bool sotto_add_contact(sotto_client* client, const char* handle, char* account_out,
                       sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  if (!handle) return null_arg(error, "handle");
  auto r = client->client->add_contact(handle);
  if (fail_if(r, error)) return false;
  if (account_out) copy_to(account_out, 33, r->account);
  ok(error);
  return true;
}

int64_t sotto_direct_conversation(sotto_client* client, const char* account, sotto_error* error) {
  SOTTO_CHECK_CLIENT(-1);
  if (!account) return null_arg(error, "account"), -1;
  auto r = client->client->direct_conversation(account);
  if (fail_if(r, error)) return -1;
  ok(error);
  return *r;
}

sotto_conversation_list* sotto_conversations(sotto_client* client, sotto_error* error) {
  SOTTO_CHECK_CLIENT(nullptr);
  auto r = client->client->conversations();
  if (fail_if(r, error)) return nullptr;
  auto* list =
      static_cast<sotto_conversation_list*>(std::calloc(1, sizeof(sotto_conversation_list)));
  if (!list) return set_error(error, sotto::ErrorCode::kInternal, "out of memory"), nullptr;
  list->count = r->size();
  list->items = static_cast<sotto_conversation*>(
      std::calloc(r->size() ? r->size() : 1, sizeof(sotto_conversation)));
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
}

void sotto_conversation_list_free(sotto_conversation_list* list) {
  if (!list) return;
  for (size_t i = 0; i < list->count; ++i) {
    std::free(const_cast<char*>(list->items[i].peer));
    std::free(const_cast<char*>(list->items[i].title));
    if (list->items[i].has_last_message) free_message(list->items[i].last_message);
  }
  std::free(list->items);
  std::free(list);
}

bool sotto_send_text(sotto_client* client, int64_t conversation, const char* text, char* id_out,
                     sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  if (!text) return null_arg(error, "text");
  auto r = client->client->send_text(conversation, text);
  if (fail_if(r, error)) return false;
  if (id_out) copy_to(id_out, 33, *r);
  ok(error);
  return true;
}

sotto_message_list* sotto_messages(sotto_client* client, int64_t conversation, const char* cursor,
                                   uint32_t limit, sotto_error* error) {
  SOTTO_CHECK_CLIENT(nullptr);
  auto r = client->client->messages(conversation, cursor ? cursor : "", limit);
  if (fail_if(r, error)) return nullptr;
  auto* list = static_cast<sotto_message_list*>(std::calloc(1, sizeof(sotto_message_list)));
  if (!list) return set_error(error, sotto::ErrorCode::kInternal, "out of memory"), nullptr;
  list->count = r->messages.size();
  list->items = static_cast<sotto_message*>(
      std::calloc(list->count ? list->count : 1, sizeof(sotto_message)));
  for (size_t i = 0; i < list->count; ++i) fill(list->items[i], r->messages[i]);
  list->next_cursor = dup(r->next_cursor);
  ok(error);
  return list;
}

void sotto_message_list_free(sotto_message_list* list) {
  if (!list) return;
  for (size_t i = 0; i < list->count; ++i) free_message(list->items[i]);
  std::free(list->items);
  std::free(const_cast<char*>(list->next_cursor));
  std::free(list);
}

bool sotto_mark_read(sotto_client* client, int64_t conversation, const char* up_to,
                     sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  if (!up_to) return null_arg(error, "up_to_message_id");
  auto r = client->client->mark_read(conversation, up_to);
  if (fail_if(r, error)) return false;
  ok(error);
  return true;
}

bool sotto_safety_number(sotto_client* client, const char* account, char* digits_out,
                         sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  if (!account || !digits_out) return null_arg(error, !account ? "account" : "digits_out");
  auto r = client->client->safety_number(account);
  if (fail_if(r, error)) return false;
  copy_to(digits_out, 61, r->digits);
  ok(error);
  return true;
}

bool sotto_accept_identity(sotto_client* client, const char* account, sotto_error* error) {
  SOTTO_CHECK_CLIENT(false);
  if (!account) return null_arg(error, "account");
  auto r = client->client->accept_identity(account);
  if (fail_if(r, error)) return false;
  ok(error);
  return true;
}

}  // extern "C"
