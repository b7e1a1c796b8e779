/*
 * sotto.h: the C API of libsotto, for every language that is not C++.
 *
 * One opaque handle, sotto_client, wraps a sotto::Client (see sotto/Client.h for the full
 * semantics). Every fallible function takes a `sotto_error* error` out-parameter (it may be
 * NULL): SOTTO_OK (0) on success, otherwise a code from the list below, and
 * sotto_error_string() then returns a sentence for the user that says what was wrong and what
 * to do. The message is kept per thread until the next sotto call on that thread.
 *
 * Strings passed in are UTF-8 and NUL-terminated. Strings and lists returned are owned by the
 * caller and released with the matching sotto_*_free function.
 *
 * Threads: every function may be called from any thread. Functions that talk to the relay
 * (sotto_register, sotto_add_contact, sotto_link_*, ...) block until it answers. Callbacks run
 * on a thread of the client's own, one at a time, in order; they may call back into the API
 * but must not call sotto_client_close().
 */
#ifndef SOTTO_H
#define SOTTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
/* Exported while libsotto is compiled (SOTTO_BUILDING), imported from sotto.dll otherwise. */
#if defined(SOTTO_BUILDING)
#define SOTTO_C_API __declspec(dllexport)
#else
#define SOTTO_C_API __declspec(dllimport)
#endif
#else
#define SOTTO_C_API __attribute__((visibility("default")))
#endif

#if defined(__GNUC__)
#define SOTTO_NODISCARD __attribute__((warn_unused_result))
#else
#define SOTTO_NODISCARD
#endif

/* Sizes of the text the SDK writes into the caller's buffers, with the terminating NUL. */
#define SOTTO_ACCOUNT_ID_LEN 33    /* an account id: 32 hex digits */
#define SOTTO_MESSAGE_ID_LEN 33    /* a message id: 32 hex digits */
#define SOTTO_HANDLE_LEN 33        /* a handle: at most 32 bytes */
#define SOTTO_LINK_CODE_LEN 9      /* a link code: 8 characters */
#define SOTTO_LINK_TEXT_LEN 48     /* a link invite as text to read out */
#define SOTTO_LINK_URI_LEN 160     /* a link invite as a URI (for a QR code) */
#define SOTTO_SAFETY_NUMBER_LEN 61 /* a safety number: 60 digits */

#ifdef __cplusplus
extern "C" {
#endif

/* Numbered by subsystem, as sotto::ErrorCode; the numbers never change meaning. */
typedef enum sotto_error {
  SOTTO_OK = 0,
  SOTTO_ERR_INVALID_ARGUMENT = 100,
  SOTTO_ERR_INVALID_STATE = 101,
  SOTTO_ERR_NOT_FOUND = 102,
  SOTTO_ERR_ALREADY_EXISTS = 103,
  SOTTO_ERR_BUSY = 104,
  SOTTO_ERR_CANCELLED = 105,
  SOTTO_ERR_WRONG_KEY = 200,
  SOTTO_ERR_STORAGE_CORRUPT = 201,
  SOTTO_ERR_STORAGE_IO = 202,
  SOTTO_ERR_STORAGE_FULL = 203,
  SOTTO_ERR_ENCRYPTION_UNAVAILABLE = 204,
  SOTTO_ERR_INCOMPATIBLE_VERSION = 205,
  SOTTO_ERR_INVALID_MESSAGE = 300,
  SOTTO_ERR_DUPLICATE_MESSAGE = 301,
  SOTTO_ERR_INVALID_SIGNATURE = 302,
  SOTTO_ERR_UNKNOWN_KEY_ID = 303,
  SOTTO_ERR_NO_SESSION = 304,
  SOTTO_ERR_UNTRUSTED_IDENTITY = 305,
  SOTTO_ERR_INVALID_KEY = 306,
  SOTTO_ERR_MALFORMED_BUNDLE = 307,
  SOTTO_ERR_LEGACY_MESSAGE = 308,
  SOTTO_ERR_CRYPTO_FAILURE = 309,
  SOTTO_ERR_UNAVAILABLE = 400,
  SOTTO_ERR_TIMEOUT = 401,
  SOTTO_ERR_UNAUTHORIZED = 402,
  SOTTO_ERR_RATE_LIMITED = 403,
  SOTTO_ERR_CONFLICT = 404,
  SOTTO_ERR_TOO_LARGE = 405,
  SOTTO_ERR_RELAY_REJECTED = 406,
  SOTTO_ERR_PROTOCOL_ERROR = 407,
  SOTTO_ERR_FORBIDDEN = 408,
  SOTTO_ERR_INTERNAL = 900
} sotto_error;

/* What went wrong in the calling thread's last failed sotto call ("" if none). Valid until
 * the next sotto call on this thread. */
SOTTO_C_API const char* sotto_error_string(void);
/* A stable lower-case name for a code, e.g. "wrong_key". */
SOTTO_C_API const char* sotto_error_name(sotto_error code);

typedef struct sotto_client sotto_client;

typedef enum sotto_message_status {
  SOTTO_STATUS_PENDING = 0,
  SOTTO_STATUS_SENT = 1,
  SOTTO_STATUS_DELIVERED = 2,
  SOTTO_STATUS_READ = 3,
  SOTTO_STATUS_FAILED = 4,
  SOTTO_STATUS_UNREAD = 10,
  SOTTO_STATUS_SEEN = 11
} sotto_message_status;

typedef enum sotto_message_kind { SOTTO_KIND_TEXT = 1, SOTTO_KIND_NOTICE = 2 } sotto_message_kind;

typedef enum sotto_connection_state {
  SOTTO_OFFLINE = 0,
  SOTTO_CONNECTING = 1,
  SOTTO_SYNCING = 2,
  SOTTO_ONLINE = 3,
  SOTTO_LOGGED_OUT = 4
} sotto_connection_state;

typedef struct sotto_attachment {
  const char* file_name;
  const char* content_type;
  uint64_t size;
  uint32_t width;
  uint32_t height;
  const uint8_t* thumbnail; /* may be NULL */
  size_t thumbnail_size;
  /* This device has the file, kept encrypted in the profile (sent from here, or downloaded):
   * sotto_save_attachment() and sotto_read_attachment() work without the relay. */
  bool stored;
} sotto_attachment;

typedef struct sotto_message {
  const char* id; /* 32 hex digits */
  int64_t conversation;
  const char* sender; /* account id, 32 hex digits */
  uint32_t sender_device;
  bool outgoing;
  sotto_message_kind kind;
  const char* text;
  uint64_t sent_ms;
  uint64_t sort_ms;
  sotto_message_status status;
  uint32_t recipients;
  uint32_t delivered_to; /* outgoing: recipients that have it ("delivered to X of Y") */
  uint32_t read_by;      /* outgoing: recipients that read it */
  uint64_t edited_ms;    /* 0 if never edited */
  bool deleted;          /* deleted for everyone */
  uint32_t expire_timer_s;
  uint64_t expires_ms; /* 0: not counting down */
  const sotto_attachment* attachments;
  size_t attachment_count;
  /* Group messages: the group revision the author sent it at (outgoing: set when it leaves
   * this device); 0 for direct messages and notices. */
  uint32_t group_revision;
} sotto_message;

typedef struct sotto_message_list {
  sotto_message* items; /* newest first */
  size_t count;
  const char* next_cursor; /* "" at the end */
} sotto_message_list;

typedef enum sotto_conversation_kind {
  SOTTO_CONVERSATION_DIRECT = 1,
  SOTTO_CONVERSATION_GROUP = 2
} sotto_conversation_kind;

typedef struct sotto_conversation {
  int64_t id;
  int kind; /* a sotto_conversation_kind */
  const char* peer;
  const char* title;
  uint32_t unread;
  uint64_t last_activity_ms;
  bool has_last_message;
  sotto_message last_message;
} sotto_conversation;

typedef struct sotto_conversation_list {
  sotto_conversation* items; /* most recent activity first */
  size_t count;
} sotto_conversation_list;

typedef struct sotto_account {
  char account[SOTTO_ACCOUNT_ID_LEN];
  uint32_t device_id;
  char handle[SOTTO_HANDLE_LEN];
} sotto_account;

typedef struct sotto_link_invite {
  char code[SOTTO_LINK_CODE_LEN];
  char text[SOTTO_LINK_TEXT_LEN];
  char uri[SOTTO_LINK_URI_LEN];
  uint64_t expires_ms;
} sotto_link_invite;

/* Callbacks; any may be NULL. `user_data` is passed back unchanged. Pointers inside the
 * arguments are valid only during the call. */
typedef struct sotto_callbacks {
  void* user_data;
  void (*on_message)(void* user_data, const sotto_message* message);
  void (*on_message_status)(void* user_data, int64_t conversation, const char* message_id,
                            sotto_message_status status);
  void (*on_receipt)(void* user_data, int64_t conversation, const char* message_id,
                     const char* account, sotto_message_status status, uint64_t at_ms);
  void (*on_connection_state)(void* user_data, sotto_connection_state state, const char* detail);
  void (*on_identity_changed)(void* user_data, const char* account, const char* handle,
                              const char* safety_number);
  void (*on_devices_changed)(void* user_data);
  /* Edited, deleted for everyone, started its disappearing countdown, or more receipts. */
  void (*on_message_changed)(void* user_data, const sotto_message* message);
  /* Gone from history (its disappearing timer ran out). */
  void (*on_message_removed)(void* user_data, int64_t conversation, const char* message_id);
  /* A group's name or members, or a disappearing timer, changed. */
  void (*on_conversation_changed)(void* user_data, int64_t conversation);
  void (*on_typing)(void* user_data, int64_t conversation, const char* account, bool typing);
  void (*on_presence)(void* user_data, const char* account, bool online, uint64_t last_seen_ms);
} sotto_callbacks;

/* A diagnostic line for a log (retries, failures, reconnects; never content, keys or
 * secrets), from the client's internal threads: keep it quick. */
typedef void (*sotto_log_fn)(void* user_data, const char* line);

/* Zero-initialise it (sotto_options o = {0};) and set what you need: a zero field takes the
 * default, so fields added in later versions keep their defaults in code written before. */
typedef struct sotto_options {
  /* wss://relay.example.org/v1/ws; plain ws:// only to localhost, 127.0.0.0/8 or [::1]. */
  const char* relay_url;
  const char* device_name; /* may be NULL */
  /* DEVELOPMENT ONLY: true lets relay_url be plain ws:// to another machine, so this device's
   * relay password and all traffic cross the network without TLS (content stays end-to-end
   * encrypted). See ClientOptions::dangerously_allow_plaintext_relay. */
  bool dangerously_allow_plaintext_relay;
  /* Delivered receipts are batched this long before they go out (0: 250 ms). */
  uint32_t receipt_delay_ms;
  /* Reconnecting: the first wait, doubling with jitter up to the last (0: 1 s and 30 s); back
   * to the first once a connection has had a request answered. */
  uint32_t backoff_initial_ms;
  uint32_t backoff_max_ms;
  /* How long a call to the relay may take (0: 30 s). */
  uint32_t request_timeout_ms;
  sotto_log_fn log; /* may be NULL */
  void* log_user_data;
} sotto_options;

/* Opens (creating if needed) the profile in `directory` and a client on it. Give either a
 * passphrase (NUL-terminated) or a 32-byte key (`key` non-NULL, `passphrase` NULL). */
SOTTO_C_API SOTTO_NODISCARD sotto_client* sotto_client_open(const char* directory,
                                                            const char* passphrase,
                                                            const uint8_t* key,
                                                            const sotto_options* options,
                                                            sotto_error* error);
/* Disconnects and closes the profile. NULL is ignored. */
SOTTO_C_API void sotto_client_close(sotto_client* client);
SOTTO_C_API void sotto_client_set_callbacks(sotto_client* client, const sotto_callbacks* callbacks);

SOTTO_C_API SOTTO_NODISCARD bool sotto_register(sotto_client* client, const char* handle,
                                                sotto_account* out, sotto_error* error);
/* The same on a relay whose registration is closed: `invite` is a token from its operator.
 * SOTTO_ERR_FORBIDDEN without one, or with one that is unknown, used up or expired. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_register_with_invite(sotto_client* client,
                                                            const char* handle, const char* invite,
                                                            sotto_account* out, sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_account_info(sotto_client* client, sotto_account* out,
                                                    sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_link_start(sotto_client* client, sotto_link_invite* out,
                                                  sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_link_finish(sotto_client* client, uint32_t timeout_ms,
                                                   sotto_account* out, sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_link_approve(sotto_client* client, const char* invite,
                                                    sotto_error* error);

/* ---- devices and the account ---- */

typedef struct sotto_device {
  uint32_t device_id;
  const char* name; /* "" when unknown */
  uint64_t created_ms;
  uint64_t last_seen_ms; /* rounded down to the day */
  bool connected;
  bool this_device;
} sotto_device;

typedef struct sotto_device_list {
  sotto_device* items;
  size_t count;
} sotto_device_list;

/* This account's devices, as the relay knows them. */
SOTTO_C_API sotto_device_list* sotto_devices(sotto_client* client, sotto_error* error);
SOTTO_C_API void sotto_device_list_free(sotto_device_list* list);
/* Unlinks a device of this account (it turns SOTTO_LOGGED_OUT). */
SOTTO_C_API SOTTO_NODISCARD bool sotto_remove_device(sotto_client* client, uint32_t device_id,
                                                     sotto_error* error);
/* Takes this device out of its account: SOTTO_LOGGED_OUT for good, the history stays
 * readable. SOTTO_ERR_FORBIDDEN when it is the account's only device (delete the account). */
SOTTO_C_API SOTTO_NODISCARD bool sotto_unlink_this_device(sotto_client* client, sotto_error* error);
/* Deletes the account at the relay: all its devices, queues and prekeys, and its handle.
 * Cannot be undone. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_delete_account(sotto_client* client, sotto_error* error);
/* Re-encrypts the profile under a new passphrase (NUL-terminated, not empty); crash-safe:
 * afterwards exactly one of the old and the new passphrase opens it. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_change_passphrase(sotto_client* client,
                                                         const char* new_passphrase,
                                                         sotto_error* error);
/* Erases a closed profile's directory (close its client first: SOTTO_ERR_BUSY otherwise);
 * SOTTO_ERR_NOT_FOUND, with nothing removed, when it holds no profile. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_profile_erase(const char* directory, sotto_error* error);

SOTTO_C_API SOTTO_NODISCARD bool sotto_connect(sotto_client* client, sotto_error* error);
SOTTO_C_API void sotto_disconnect(sotto_client* client);
SOTTO_C_API sotto_connection_state sotto_connection(sotto_client* client);
/* true when online (connected and up to date) within the timeout. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_wait_online(sotto_client* client, uint32_t timeout_ms);

/* Finds an account by handle; writes its id (SOTTO_ACCOUNT_ID_LEN bytes with the NUL) to
 * `account_out`. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_add_contact(sotto_client* client, const char* handle,
                                                   char* account_out, sotto_error* error);
/* The 1:1 conversation with an account id; -1 on error. */
SOTTO_C_API SOTTO_NODISCARD int64_t sotto_direct_conversation(sotto_client* client,
                                                              const char* account,
                                                              sotto_error* error);
SOTTO_C_API sotto_conversation_list* sotto_conversations(sotto_client* client, sotto_error* error);
SOTTO_C_API void sotto_conversation_list_free(sotto_conversation_list* list);

typedef struct sotto_contact {
  const char* account; /* 32 hex digits */
  const char* handle;  /* without '@' */
} sotto_contact;

typedef struct sotto_contact_list {
  sotto_contact* items;
  size_t count;
} sotto_contact_list;

/* The accounts found with sotto_add_contact (or met in a conversation). */
SOTTO_C_API sotto_contact_list* sotto_contacts(sotto_client* client, sotto_error* error);
SOTTO_C_API void sotto_contact_list_free(sotto_contact_list* list);

/* Queues a text message (UTF-8, at most 16 KiB); writes its id (SOTTO_MESSAGE_ID_LEN bytes with
 * the NUL) to `id_out` (may be NULL). */
SOTTO_C_API SOTTO_NODISCARD bool sotto_send_text(sotto_client* client, int64_t conversation,
                                                 const char* text, char* id_out,
                                                 sotto_error* error);
/* A page of history, newest first; `cursor` NULL or "" for the newest page; `limit` 1..1000
 * messages (SOTTO_ERR_INVALID_ARGUMENT otherwise). */
SOTTO_C_API sotto_message_list* sotto_messages(sotto_client* client, int64_t conversation,
                                               const char* cursor, uint32_t limit,
                                               sotto_error* error);
SOTTO_C_API void sotto_message_list_free(sotto_message_list* list);
/* One message by id; free with sotto_message_free. SOTTO_ERR_NOT_FOUND when there is none. */
SOTTO_C_API sotto_message* sotto_message_get(sotto_client* client, int64_t conversation,
                                             const char* message_id, sotto_error* error);
SOTTO_C_API void sotto_message_free(sotto_message* message);

typedef struct sotto_receipt {
  const char* account;
  sotto_message_status status; /* SOTTO_STATUS_DELIVERED or SOTTO_STATUS_READ */
  uint64_t at_ms;
} sotto_receipt;

typedef struct sotto_receipt_list {
  sotto_receipt* items;
  size_t count;
} sotto_receipt_list;

/* Delivered / read receipts of an outgoing message, one per recipient account. */
SOTTO_C_API sotto_receipt_list* sotto_receipts(sotto_client* client, int64_t conversation,
                                               const char* message_id, sotto_error* error);
SOTTO_C_API void sotto_receipt_list_free(sotto_receipt_list* list);
/* Read receipts on or off (on by default); delivered receipts are always sent. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_set_read_receipts(sotto_client* client, bool enabled,
                                                         sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_mark_read(sotto_client* client, int64_t conversation,
                                                 const char* up_to_message_id, sotto_error* error);

SOTTO_C_API SOTTO_NODISCARD bool sotto_edit_message(sotto_client* client, int64_t conversation,
                                                    const char* message_id, const char* new_text,
                                                    sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_delete_for_everyone(sotto_client* client,
                                                           int64_t conversation,
                                                           const char* message_id,
                                                           sotto_error* error);
/* 0 turns disappearing messages off. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_set_disappearing_timer(sotto_client* client,
                                                              int64_t conversation,
                                                              uint32_t seconds, sotto_error* error);

/* ---- files ---- */

/* Called with bytes done and total; return false to cancel the transfer. */
typedef bool (*sotto_progress_fn)(void* user_data, uint64_t done, uint64_t total);

typedef struct sotto_file_options {
  const char* caption;      /* may be NULL */
  const char* content_type; /* NULL: guessed from the name */
  const char* file_name;    /* NULL: the file's own */
  uint32_t width;           /* 0: read from PNG/JPEG headers */
  uint32_t height;
  const uint8_t* thumbnail; /* at most 8 KiB; may be NULL */
  size_t thumbnail_size;
} sotto_file_options;

/* Encrypts and uploads the file, then queues the message (blocks during the upload). */
SOTTO_C_API SOTTO_NODISCARD bool sotto_send_file(sotto_client* client, int64_t conversation,
                                                 const char* path,
                                                 const sotto_file_options* options,
                                                 sotto_progress_fn progress, void* user_data,
                                                 char* id_out, sotto_error* error);
/* Downloads (resuming) and verifies attachment `index` of a message and keeps it, encrypted,
 * in the profile (its `stored` turns true). Nothing to do when it is stored already. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_download_attachment(sotto_client* client,
                                                           int64_t conversation,
                                                           const char* message_id, uint32_t index,
                                                           sotto_progress_fn progress,
                                                           void* user_data, sotto_error* error);
/* Decrypts a stored attachment into the file `destination`, which the app chose outside the
 * profile directory (complete or untouched; an existing file is replaced). */
SOTTO_C_API SOTTO_NODISCARD bool sotto_save_attachment(sotto_client* client, int64_t conversation,
                                                       const char* message_id, uint32_t index,
                                                       const char* destination,
                                                       sotto_progress_fn progress, void* user_data,
                                                       sotto_error* error);
/* The plaintext of a stored attachment of at most `max_bytes` bytes, in memory: its length in
 * `*size_out`, to free with sotto_bytes_free(); NULL on error. */
SOTTO_C_API uint8_t* sotto_read_attachment(sotto_client* client, int64_t conversation,
                                           const char* message_id, uint32_t index,
                                           uint64_t max_bytes, size_t* size_out,
                                           sotto_error* error);
SOTTO_C_API void sotto_bytes_free(uint8_t* bytes);
SOTTO_C_API void sotto_string_free(char* s);

/* ---- groups ---- */

typedef struct sotto_group_member {
  const char* account;
  const char* handle;
  bool admin;
} sotto_group_member;

typedef struct sotto_group {
  int64_t conversation;
  const char* group_id; /* 64 hex digits */
  const char* name;
  uint32_t revision;
  const sotto_group_member* members;
  size_t member_count;
  bool is_member;
  bool is_admin;
} sotto_group;

/* A new group with this account as admin; -1 on error. */
SOTTO_C_API SOTTO_NODISCARD int64_t sotto_create_group(sotto_client* client, const char* name,
                                                       const char* const* accounts,
                                                       size_t account_count, sotto_error* error);
SOTTO_C_API sotto_group* sotto_group_info(sotto_client* client, int64_t conversation,
                                          sotto_error* error);
SOTTO_C_API void sotto_group_free(sotto_group* group);
SOTTO_C_API SOTTO_NODISCARD bool sotto_add_group_members(sotto_client* client, int64_t conversation,
                                                         const char* const* accounts,
                                                         size_t account_count, sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_remove_group_members(sotto_client* client,
                                                            int64_t conversation,
                                                            const char* const* accounts,
                                                            size_t account_count,
                                                            sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_rename_group(sotto_client* client, int64_t conversation,
                                                    const char* name, sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_set_group_admin(sotto_client* client, int64_t conversation,
                                                       const char* account, bool admin,
                                                       sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_leave_group(sotto_client* client, int64_t conversation,
                                                   sotto_error* error);

/* ---- typing and presence ---- */

SOTTO_C_API SOTTO_NODISCARD bool sotto_set_typing(sotto_client* client, int64_t conversation,
                                                  bool typing, sotto_error* error);
/* The conversations on screen: their members' presence arrives through on_presence. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_watch_presence(sotto_client* client,
                                                      const int64_t* conversations, size_t count,
                                                      sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_set_presence_hidden(sotto_client* client, bool hidden,
                                                           sotto_error* error);

/* ---- wake-ups ---- */

/* Where the relay wakes this device when a message is queued for it while it is offline (the
 * URL the platform's push service gave the app); NULL stops the wake-ups. Asks the relay, so
 * it fails with SOTTO_ERR_UNAVAILABLE while offline. See Client::set_push_endpoint(). */
SOTTO_C_API SOTTO_NODISCARD bool sotto_set_push_endpoint(sotto_client* client, const char* url,
                                                         sotto_error* error);

/* ---- search (see sotto/Search.h for the query language) ---- */

typedef struct sotto_search_query {
  const char* text;
  const int64_t* conversations; /* filter; may be NULL */
  size_t conversation_count;
  const char* const* senders; /* account ids; may be NULL */
  size_t sender_count;
  uint64_t since_ms; /* 0: no lower bound */
  uint64_t until_ms; /* 0: no upper bound */
  bool with_attachments_only;
  bool by_relevance;  /* false: newest first */
  uint32_t limit;     /* 0: 20 */
  const char* cursor; /* NULL or "" for the first page */
} sotto_search_query;

typedef struct sotto_search_highlight {
  uint32_t begin; /* byte offsets into the snippet */
  uint32_t end;
} sotto_search_highlight;

typedef struct sotto_search_hit {
  const char* message_id;
  int64_t conversation;
  const char* sender;
  uint64_t sort_ms;
  const char* snippet;
  const sotto_search_highlight* highlights;
  size_t highlight_count;
  double score;
} sotto_search_hit;

typedef struct sotto_search_page {
  const sotto_search_hit* hits;
  size_t count;
  const char* next_cursor; /* "" at the end */
  bool index_complete;
} sotto_search_page;

SOTTO_C_API sotto_search_page* sotto_search(sotto_client* client, const sotto_search_query* query,
                                            sotto_error* error);
SOTTO_C_API void sotto_search_page_free(sotto_search_page* page);

/* The 60-digit safety number with an account, written with a NUL to `digits_out`
 * (SOTTO_SAFETY_NUMBER_LEN bytes). */
SOTTO_C_API SOTTO_NODISCARD bool sotto_safety_number(sotto_client* client, const char* account,
                                                     char* digits_out, sotto_error* error);
SOTTO_C_API SOTTO_NODISCARD bool sotto_accept_identity(sotto_client* client, const char* account,
                                                       sotto_error* error);
/* The user compared the safety number (in person or by its code) and marks it verified, or
 * takes that back; a changed identity key makes it unverified again by itself. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_set_verified(sotto_client* client, const char* account,
                                                    bool verified, sotto_error* error);
/* Whether the current safety number with `account` is the one the user verified; false with
 * the error set on failure. */
SOTTO_C_API SOTTO_NODISCARD bool sotto_is_verified(sotto_client* client, const char* account,
                                                   sotto_error* error);

#ifdef __cplusplus
}
#endif

#endif /* SOTTO_H */
