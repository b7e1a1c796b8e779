// sotto::Client, sending: the outbox, device lists and STALE_DEVICES, retries.

#include "ClientImpl.h"

namespace sotto {

using namespace std::chrono_literals;

void Client::Impl::run_outbox() {
  {
    std::lock_guard lock(mu);
    outbox_due_ms = 0;
  }
  {
    auto c = connection();
    if (!c || !c->connected()) return;  // resumes on the next connect
  }
  // Sends cover this account's other devices, so know them first.
  if (!own_devices_known && !refresh_own_devices().ok()) {
    std::lock_guard lock(mu);
    outbox_due_ms = now() + 1000;
    return;
  }
  for (int sent = 0; sent < 10000; ++sent) {
    auto c = connection();
    if (!c || !c->connected()) return;
    auto next = locked([&] { return history.next_outbox(now()); });
    if (!next.ok() || !*next) break;
    Outcome o = send_item(**next);
    if (o == Outcome::kStop) return;
  }
  auto due = locked([&] { return history.next_outbox_due(); });
  if (due.ok() && *due) {
    std::lock_guard lock(mu);
    outbox_due_ms = std::max<uint64_t>(**due, now() + 1);
  }
}

Client::Impl::Outcome Client::Impl::retry_later(const OutboxItem& item, const Error& e,
                                                uint64_t delay_ms) {
  diagnose("send of outbox item " + std::to_string(item.id) + " postponed: " + e.message);
  // Exponential up to 5 minutes, so a persistent problem does not spin.
  uint64_t backoff =
      delay_ms ? delay_ms : std::min<uint64_t>(300'000, 1000ull << std::min(item.attempts, 8));
  log_failure(txn([&] { return history.outbox_retry(item.id, now() + backoff, e.message); }),
              "recording an outbox retry");
  std::lock_guard lock(mu);
  uint64_t due = now() + backoff;
  if (outbox_due_ms == 0 || due < outbox_due_ms) outbox_due_ms = due;
  return Outcome::kRetry;
}

Client::Impl::Outcome Client::Impl::fail_item(const OutboxItem& item, const Error& e) {
  diagnose("send of outbox item " + std::to_string(item.id) + " failed for good: " + e.message);
  Effects fx;
  Status s = txn([&]() -> Status {
    SOTTO_TRY(history.outbox_done(item.id));
    if (item.message && (item.kind == OutboxKind::kData || item.kind == OutboxKind::kGroupData)) {
      SOTTO_TRY_ASSIGN(auto m, history.message(*item.message));
      if (m) {
        SOTTO_TRY(history.mark_failed(*item.message));
        ConversationId conv = m->message.conversation;
        std::string mid = m->message.id;
        fx.events.push_back([conv, mid](ClientListener& l) {
          l.on_message_status(conv, mid, MessageStatus::kFailed);
        });
        SOTTO_TRY(add_notice(conv, "A message could not be sent: " + e.message, 0, fx));
      }
    }
    return {};
  });
  // Not stored: the row stays in the outbox and is tried again, and fails again, later.
  if (!s.ok()) return retry_later(item, s.error(), 0);
  emit(std::move(fx.events));
  return Outcome::kDone;
}

// Starts sessions from the relay's bundles for `account` (all devices when `devices` is
// empty). kUntrustedIdentity when the account's identity key changed.
Status Client::Impl::fetch_sessions(const std::string& account,
                                    const std::vector<uint32_t>& devices) {
  Bytes id;
  from_hex(account, id);
  auto req = make_request(wire::OP_GET_BUNDLES);
  req.mutable_get_bundles()->set_account_id(str_of(id));
  for (uint32_t d : devices) req.mutable_get_bundles()->add_device_ids(d);
  SOTTO_TRY_ASSIGN(auto r, call(std::move(req)));
  if (r.status() != wire::OK) return status_error(r, "fetching prekey bundles");
  Effects fx;
  Status s = locked([&]() -> Status {
    for (const auto& b : r.get_bundles().bundles()) {
      Address a{account, b.device_id()};
      Status st = parts.crypto.start_session(a, b);
      if (st.code() == ErrorCode::kUntrustedIdentity) {
        SOTTO_TRY(parts.crypto.transaction([&] { return history.hold_outbox(account, true); }));
        identity_changed_event(account, bytes_of(b.identity_key()), fx);
        return st;
      }
      SOTTO_TRY(std::move(st));
    }
    return {};
  });
  emit(std::move(fx.events));
  return s;
}

Client::Impl::Outcome Client::Impl::send_item(const OutboxItem& item) {
  if (item.kind == OutboxKind::kGroupData) return send_group_data(item);
  if (item.kind == OutboxKind::kGroupUpdate) return send_group_update(item);
  std::string me = self_account();
  uint32_t my_device = self_device();
  bool targeted = item.target_device.has_value();
  for (int attempt = 0; attempt < 6; ++attempt) {
    // Who gets what.
    std::vector<Target> targets;
    if (targeted) {
      Address a{*item.target, *item.target_device};
      auto has = locked([&] { return parts.crypto.has_session(a); });
      if (!has.ok()) return retry_later(item, has.error(), 0);
      if (!*has) {
        Status s = fetch_sessions(a.account, {a.device_id});
        if (!s.ok()) return on_send_error(item, s.error());
      }
      targets.push_back(Target{a, &item.content});
    } else {
      if (item.target) {
        auto devs = locked([&] { return parts.crypto.session_devices(*item.target); });
        if (!devs.ok()) return retry_later(item, devs.error(), 0);
        if (devs->empty()) {
          Status s = fetch_sessions(*item.target, {});
          if (!s.ok()) return on_send_error(item, s.error());
          devs = locked([&] { return parts.crypto.session_devices(*item.target); });
          if (!devs.ok()) return retry_later(item, devs.error(), 0);
        }
        for (uint32_t d : *devs)
          if (!(*item.target == me && d == my_device))
            targets.push_back(Target{Address{*item.target, d}, &item.content});
      }
      const Bytes* own =
          item.target ? (item.own_content ? &*item.own_content : nullptr) : &item.content;
      if (own) {
        std::vector<uint32_t> missing;
        auto devs = locked([&] { return parts.crypto.session_devices(me); });
        if (!devs.ok()) return retry_later(item, devs.error(), 0);
        for (uint32_t d : own_devices)
          if (!std::count(devs->begin(), devs->end(), d)) missing.push_back(d);
        if (!missing.empty()) {
          Status s = fetch_sessions(me, missing);
          if (!s.ok()) return on_send_error(item, s.error());
          devs = locked([&] { return parts.crypto.session_devices(me); });
          if (!devs.ok()) return retry_later(item, devs.error(), 0);
        }
        for (uint32_t d : *devs)
          if (d != my_device) targets.push_back(Target{Address{me, d}, own});
      }
    }
    if (targets.empty()) {
      // Nobody to send to (own-device sync with no other devices): nothing to do.
      Status done = txn([&] { return history.outbox_done(item.id); });
      if (!done.ok()) return retry_later(item, done.error(), 0);
      return Outcome::kDone;
    }
    if (targets.size() > kMaxSendMessages)
      return fail_item(item, make_error(ErrorCode::kTooLarge, "too many recipient devices"));

    // Encrypt for every device in one transaction; the ratchet steps commit before the send
    // (a resend re-encrypts; the relay keeps the first copy it committed).
    auto req = make_request(wire::OP_SEND);
    auto* send = req.mutable_send();
    std::optional<Address> broken;
    Status enc = txn([&]() -> Status {
      send->Clear();
      send->set_message_id(str_of(item.message_id));
      send->set_urgent(item.urgent);
      send->set_targeted(targeted);
      for (const auto& t : targets) {
        auto ct = parts.crypto.encrypt(t.address, *t.content);
        if (!ct.ok()) {
          broken = t.address;
          return std::move(ct).error();
        }
        SOTTO_TRY_ASSIGN(uint32_t reg, registration_id(t.address));
        auto* m = send->add_messages();
        Bytes acct;
        from_hex(t.address.account, acct);
        m->set_account_id(str_of(acct));
        m->set_device_id(t.address.device_id);
        m->set_registration_id(reg);
        m->set_type(ct->type == CiphertextType::kPreKey ? wire::Envelope::PREKEY_MESSAGE
                                                        : wire::Envelope::MESSAGE);
        m->set_ciphertext(str_of(ct->bytes));
      }
      return {};
    });
    if (!enc.ok()) {
      if (broken && is_crypto_failure(enc.code())) {
        // Our session record with that device is unusable: drop it, start a fresh one.
        Status dropped = locked([&] { return parts.crypto.delete_session(*broken); });
        if (!dropped.ok()) return retry_later(item, dropped.error(), 0);
        continue;
      }
      return retry_later(item, enc.error(), 0);
    }

    auto c = connection();
    if (!c) return Outcome::kStop;
    auto r = c->call(std::move(req));
    if (!r.ok()) {
      if (r.code() == ErrorCode::kTimeout) return retry_later(item, r.error(), 2000);
      return Outcome::kStop;  // disconnected: the next connect resumes the outbox
    }
    switch (r->status()) {
      case wire::OK:
        return item_sent(item, r->send().server_timestamp_ms());
      case wire::STALE_DEVICES: {
        Status s = apply_mismatch(r->stale_devices(), me);
        if (!s.ok()) return on_send_error(item, s.error());
        continue;
      }
      default:
        return on_send_error(item, status_error(*r, "sending"));
    }
  }
  return retry_later(
      item,
      make_error(ErrorCode::kUnavailable, "the recipients' devices kept changing during the send"),
      0);
}

Client::Impl::Outcome Client::Impl::on_send_error(const OutboxItem& item, const Error& e) {
  switch (e.code) {
    case ErrorCode::kUntrustedIdentity:
      return Outcome::kDone;  // held until accept_identity()
    case ErrorCode::kUnavailable:
      if (!connection() || !connection()->connected()) return Outcome::kStop;
      return retry_later(item, e, 0);
    case ErrorCode::kTimeout:
      return retry_later(item, e, 2000);
    case ErrorCode::kRateLimited:
      return retry_later(item, e, 0);
    case ErrorCode::kNotFound:
    case ErrorCode::kTooLarge:
    case ErrorCode::kRelayRejected:
    case ErrorCode::kForbidden:
    case ErrorCode::kMalformedBundle:
    case ErrorCode::kInvalidKey:
    case ErrorCode::kInvalidSignature:
      if (item.attempts >= 3 || e.code == ErrorCode::kNotFound) return fail_item(item, e);
      return retry_later(item, e, 0);
    default:
      return retry_later(item, e, 0);
  }
}

Result<uint32_t> Client::Impl::registration_id(const Address& device) {
  auto key = std::make_pair(device.account, device.device_id);
  auto it = registration_ids.find(key);
  if (it != registration_ids.end()) return it->second;
  SOTTO_TRY_ASSIGN(uint32_t id, parts.crypto.remote_registration_id(device));
  registration_ids.emplace(key, id);
  return id;
}

Status Client::Impl::apply_mismatch(const wire::DeviceMismatch& mismatch, const std::string& me,
                                    std::vector<std::string>* in_doubt) {
  for (const auto& a : mismatch.accounts()) {
    if (a.account_id().size() != 16) continue;
    std::string account = to_hex(view_of(a.account_id()));
    SOTTO_TRY(locked([&]() -> Status {
      for (uint32_t d : a.extra_devices())
        SOTTO_TRY(parts.crypto.delete_session(Address{account, d}));
      for (uint32_t d : a.stale_devices())
        SOTTO_TRY(parts.crypto.delete_session(Address{account, d}));
      for (uint32_t d : a.stale_devices()) registration_ids.erase({account, d});
      for (uint32_t d : a.extra_devices()) registration_ids.erase({account, d});
      ++registration_epoch;
      return {};
    }));
    if (account == me) {
      for (uint32_t d : a.extra_devices()) own_devices.erase(d);
      for (uint32_t d : a.missing_devices()) own_devices.insert(d);
      for (uint32_t d : a.stale_devices()) own_devices.insert(d);
    }
    std::vector<uint32_t> fetch(a.missing_devices().begin(), a.missing_devices().end());
    fetch.insert(fetch.end(), a.stale_devices().begin(), a.stale_devices().end());
    if (fetch.empty()) continue;
    Status fetched = fetch_sessions(account, fetch);
    if (in_doubt && fetched.code() == ErrorCode::kUntrustedIdentity) {
      in_doubt->push_back(account);
      continue;
    }
    SOTTO_TRY(std::move(fetched));
  }
  return {};
}

Client::Impl::Outcome Client::Impl::item_sent(const OutboxItem& item, uint64_t server_ms) {
  Effects fx;
  Status s = txn([&]() -> Status {
    SOTTO_TRY(history.outbox_done(item.id));
    if (item.message && (item.kind == OutboxKind::kData || item.kind == OutboxKind::kGroupData)) {
      SOTTO_TRY_ASSIGN(bool raised, history.raise_status(*item.message, MessageStatus::kSent));
      if (server_ms) SOTTO_TRY(history.set_sort_ms(*item.message, server_ms));
      if (raised) {
        SOTTO_TRY_ASSIGN(auto m, history.message(*item.message));
        if (m) {
          ConversationId conv = m->message.conversation;
          std::string mid = m->message.id;
          fx.events.push_back([conv, mid](ClientListener& l) {
            l.on_message_status(conv, mid, MessageStatus::kSent);
          });
        }
      }
    }
    return {};
  });
  if (!s.ok()) return retry_later(item, s.error(), 0);
  emit(std::move(fx.events));
  return Outcome::kDone;
}

}  // namespace sotto
