/*
 * hello.c: two accounts talk through a sotto relay, in C.
 *
 *   hello_c ws://127.0.0.1:8080/v1/ws /tmp/hello
 *
 * Creates (or reopens) two profiles under the directory, registers @alice_<n> and @bob_<n>,
 * sends one message from Alice to Bob and waits until Bob has it and Alice sees it delivered.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep and getpid under a strict -std=c11 */
#include <sotto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Callbacks run on the client's event thread while main() polls: the flags are atomics, set
 * with release order after `text` is written, so main() sees the text once it sees the flag
 * (volatile would be a data race). */
struct inbox {
  atomic_int received;
  atomic_int delivered;
  char text[256];
};

static void on_message(void* user_data, const sotto_message* m) {
  struct inbox* box = user_data;
  if (m->outgoing || m->kind != SOTTO_KIND_TEXT) return;
  snprintf(box->text, sizeof box->text, "%s", m->text);
  atomic_store_explicit(&box->received, 1, memory_order_release);
}

static void on_status(void* user_data, int64_t conversation, const char* id,
                      sotto_message_status status) {
  struct inbox* box = user_data;
  (void)conversation, (void)id;
  if (status == SOTTO_STATUS_DELIVERED || status == SOTTO_STATUS_READ)
    atomic_store_explicit(&box->delivered, 1, memory_order_release);
}

static int fail(const char* what, sotto_error err) {
  fprintf(stderr, "hello: %s failed: %s (%s)\n", what, sotto_error_string(),
          sotto_error_name(err));
  return 1;
}

static int wait_for(atomic_int* flag, int seconds) {
  const struct timespec tick = {0, 10 * 1000 * 1000}; /* 10 ms */
  for (int i = 0; i < seconds * 100 && !atomic_load_explicit(flag, memory_order_acquire); ++i)
    nanosleep(&tick, NULL);
  return atomic_load_explicit(flag, memory_order_acquire);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s RELAY_URL DIRECTORY\n", argv[0]);
    return 2;
  }
  char dir_a[1024], dir_b[1024], alice_handle[SOTTO_HANDLE_LEN], bob_handle[SOTTO_HANDLE_LEN];
  snprintf(dir_a, sizeof dir_a, "%s/alice", argv[2]);
  snprintf(dir_b, sizeof dir_b, "%s/bob", argv[2]);
  unsigned n = (unsigned)getpid() ^ (unsigned)time(NULL);
  snprintf(alice_handle, sizeof alice_handle, "alice_%u", n);
  snprintf(bob_handle, sizeof bob_handle, "bob_%u", n);

  sotto_options options = {.relay_url = argv[1], .device_name = "hello.c"};
  sotto_error err;
  sotto_client* alice = sotto_client_open(dir_a, "alice's passphrase", NULL, &options, &err);
  if (!alice) return fail("opening Alice's profile", err);
  sotto_client* bob = sotto_client_open(dir_b, "bob's passphrase", NULL, &options, &err);
  if (!bob) return fail("opening Bob's profile", err);

  struct inbox alice_box = {0}, bob_box = {0};
  sotto_callbacks cb_a = {.user_data = &alice_box, .on_message_status = on_status};
  sotto_callbacks cb_b = {.user_data = &bob_box, .on_message = on_message};
  sotto_client_set_callbacks(alice, &cb_a);
  sotto_client_set_callbacks(bob, &cb_b);

  sotto_account a, b;
  if (!sotto_register(alice, alice_handle, &a, &err)) return fail("registering Alice", err);
  if (!sotto_register(bob, bob_handle, &b, &err)) return fail("registering Bob", err);
  printf("registered @%s (%s) and @%s (%s)\n", a.handle, a.account, b.handle, b.account);
  if (!sotto_wait_online(alice, 20000) || !sotto_wait_online(bob, 20000)) {
    fprintf(stderr, "hello: the clients did not come online\n");
    return 1;
  }

  char bob_account[SOTTO_ACCOUNT_ID_LEN];
  if (!sotto_add_contact(alice, bob_handle, bob_account, &err)) return fail("finding Bob", err);
  int64_t conv = sotto_direct_conversation(alice, bob_account, &err);
  if (conv < 0) return fail("opening the conversation", err);
  char id[SOTTO_MESSAGE_ID_LEN];
  if (!sotto_send_text(alice, conv, "hello from C", id, &err)) return fail("sending", err);
  printf("alice sent %s\n", id);

  if (!wait_for(&bob_box.received, 20)) {
    fprintf(stderr, "hello: Bob did not receive the message\n");
    return 1;
  }
  printf("bob received: %s\n", bob_box.text);
  if (!wait_for(&alice_box.delivered, 20)) {
    fprintf(stderr, "hello: Alice did not see the message delivered\n");
    return 1;
  }
  printf("alice sees it delivered\n");

  sotto_message_list* list = sotto_messages(alice, conv, NULL, 10, &err);
  if (!list) return fail("reading history", err);
  printf("alice's history: %zu message(s), newest \"%s\"\n", list->count,
         list->count ? list->items[0].text : "");
  sotto_message_list_free(list);

  sotto_client_close(alice);
  sotto_client_close(bob);
  return strcmp(bob_box.text, "hello from C") == 0 ? 0 : 1;
}
