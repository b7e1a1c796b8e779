#include "Admin.h"

#include <charconv>
#include <ctime>
#include <iomanip>
#include <map>
#include <optional>

#include "Validate.h"

namespace sotto::relay {

const char* const kAdminUsage =
    "Usage: sotto-relay admin COMMAND [ARGS] --data-dir DIR [--db-key-file FILE | --store URL]\n"
    "       (or --config FILE: the relay's own config file)\n"
    "\n"
    "  accounts [PREFIX] [--limit N]   accounts whose handle starts with PREFIX (all: none),\n"
    "                                  with devices, queue, created and last seen\n"
    "  show HANDLE                     one account and its devices\n"
    "  suspend HANDLE --reason TEXT    its devices are disconnected and refused with TEXT\n"
    "  unsuspend HANDLE                lifts a suspension\n"
    "  delete HANDLE --yes             deletes the account, its devices, prekeys and queues\n"
    "  totals                          accounts, devices, queued envelopes, stored files\n"
    "  invite create [--uses N] [--valid-days D] [--note TEXT]\n"
    "                                  a token for a relay with registration-open = false\n"
    "                                  (default: 1 use, valid 7 days); shown only once\n"
    "  invite list                     live and spent invites (their ids, never the tokens)\n"
    "  invite revoke ID|TOKEN          an invite can no longer be used\n"
    "\n"
    "A running relay applies suspend and delete within a few seconds: connected devices are\n"
    "closed (4003 suspended, 4001 deleted) and new connections refused.\n";

namespace {

constexpr uint64_t kDayMs = 24ull * 60 * 60 * 1000;

std::string date_of(uint64_t ms) {
  if (ms == 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%MZ", &tm);
  return buf;
}

std::string day_of(uint64_t ms) { return ms == 0 ? "-" : date_of(ms).substr(0, 10); }

// An invite's id in listings: the start of its token's hash (the token is never stored).
std::string invite_id(ByteView token_hash) { return to_hex(token_hash).substr(0, 12); }

// Runs `body` in one transaction; a failure rolls back and is reported.
template <typename F>
bool in_transaction(Store& store, std::ostream& err, F&& body) {
  if (auto s = store.begin(); !s.ok()) {
    err << "sotto-relay admin: the store failed: " << s.error().message << "\n";
    return false;
  }
  Status s = body();
  if (s.ok()) s = store.commit();
  if (!s.ok()) {
    store.rollback();
    err << "sotto-relay admin: the store failed: " << s.error().message << "\n";
    return false;
  }
  return true;
}

struct Args {
  std::vector<std::string> words;
  std::map<std::string, std::string> flags;  // --name value, "--yes" -> ""
};

std::optional<Args> split(const std::vector<std::string>& in, std::ostream& err) {
  Args a;
  for (size_t i = 0; i < in.size(); ++i) {
    const std::string& w = in[i];
    if (!w.starts_with("--")) {
      a.words.push_back(w);
      continue;
    }
    auto eq = w.find('=');
    std::string name = w.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    if (name == "yes") {
      a.flags[name] = "";
    } else if (eq != std::string::npos) {
      a.flags[name] = w.substr(eq + 1);
    } else if (i + 1 < in.size()) {
      a.flags[name] = in[++i];
    } else {
      err << "sotto-relay admin: --" << name << " needs a value\n";
      return std::nullopt;
    }
  }
  return a;
}

std::optional<uint64_t> number(const std::string& text) {
  uint64_t v = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

class Admin {
 public:
  Admin(Store& store, uint64_t now_ms, std::ostream& out, std::ostream& err)
      : store_(store), now_(now_ms), out_(out), err_(err) {}

  int run(const Args& a) {
    const auto& w = a.words;
    const std::string cmd = w.empty() ? "help" : w[0];
    if (!allowed_flags(cmd, a)) return 2;
    if (cmd == "help") {
      out_ << kAdminUsage;
      return 0;
    }
    if (cmd == "accounts" && w.size() <= 2) return accounts(w.size() == 2 ? w[1] : "", a);
    if (cmd == "show" && w.size() == 2) return show(w[1]);
    if (cmd == "suspend" && w.size() == 2) return suspend(w[1], a);
    if (cmd == "unsuspend" && w.size() == 2) return unsuspend(w[1]);
    if (cmd == "delete" && w.size() == 2) return remove(w[1], a);
    if (cmd == "totals" && w.size() == 1) return totals();
    if (cmd == "invite" && w.size() == 2 && w[1] == "create") return invite_create(a);
    if (cmd == "invite" && w.size() == 2 && w[1] == "list") return invite_list();
    if (cmd == "invite" && w.size() == 3 && w[1] == "revoke") return invite_revoke(w[2]);
    err_ << "sotto-relay admin: cannot read `" << join(w)
         << "`; `sotto-relay admin help` lists the commands\n";
    return 2;
  }

 private:
  static std::string join(const std::vector<std::string>& w) {
    std::string s;
    for (const auto& x : w) s += (s.empty() ? "" : " ") + x;
    return s;
  }

  bool allowed_flags(const std::string& cmd, const Args& a) {
    static const std::map<std::string, std::vector<std::string>> allowed = {
        {"accounts", {"limit"}},
        {"suspend", {"reason"}},
        {"delete", {"yes"}},
        {"invite", {"uses", "valid-days", "note"}}};
    auto it = allowed.find(cmd);
    for (const auto& [name, value] : a.flags) {
      bool ok = it != allowed.end() &&
                std::find(it->second.begin(), it->second.end(), name) != it->second.end();
      if (!ok) {
        err_ << "sotto-relay admin: --" << name << " does not go with `" << cmd
             << "`; `sotto-relay admin help` says which do\n";
        return false;
      }
    }
    return true;
  }

  // The account with this handle, or a message and nullopt.
  std::optional<AccountRecord> find(const std::string& handle, int& status) {
    std::optional<AccountRecord> found;
    if (!in_transaction(store_, err_, [&]() -> Status {
          SOTTO_TRY_ASSIGN(found, store_.find_account_by_handle(handle));
          return {};
        })) {
      status = 1;
      return std::nullopt;
    }
    if (!found) {
      err_ << "sotto-relay admin: there is no account with the handle '" << handle
           << "' (`sotto-relay admin accounts` lists them)\n";
      status = 1;
    }
    return found;
  }

  int accounts(const std::string& prefix, const Args& a) {
    uint64_t limit = 100;
    if (auto f = a.flags.find("limit"); f != a.flags.end()) {
      auto n = number(f->second);
      if (!n || *n == 0 || *n > 1000000) {
        err_ << "sotto-relay admin: --limit is a number from 1 to 1000000\n";
        return 2;
      }
      limit = *n;
    }
    std::vector<AccountSummary> list;
    if (!in_transaction(store_, err_, [&]() -> Status {
          // One more than asked: to say whether the list is cut.
          SOTTO_TRY_ASSIGN(list, store_.list_accounts(prefix, static_cast<uint32_t>(limit + 1)));
          return {};
        }))
      return 1;
    bool more = list.size() > limit;
    if (more) list.resize(limit);
    out_ << std::left << std::setw(33) << "HANDLE" << std::setw(33) << "ACCOUNT" << std::right
         << std::setw(8) << "DEVICES" << std::setw(9) << "QUEUED" << std::setw(12) << "Q.BYTES"
         << "  " << std::left << std::setw(11) << "CREATED" << std::setw(11) << "LAST SEEN"
         << "STATE\n";
    for (const auto& s : list) {
      out_ << std::left << std::setw(33) << s.account.handle << std::setw(33)
           << to_hex(s.account.id) << std::right << std::setw(8) << s.devices << std::setw(9)
           << s.queued_envelopes << std::setw(12) << s.queued_bytes << "  " << std::left
           << std::setw(11) << day_of(s.account.created_at_ms) << std::setw(11)
           << day_of(std::max(s.account.last_seen_ms, s.device_last_seen_ms))
           << (s.account.suspended ? "suspended: " + s.account.suspended_reason : "active")
           << "\n";
    }
    out_ << list.size() << (list.size() == 1 ? " account" : " accounts");
    if (more) out_ << " (more match: --limit N, or a longer prefix)";
    out_ << "\n";
    return 0;
  }

  int show(const std::string& handle) {
    int status = 0;
    auto account = find(handle, status);
    if (!account) return status;
    std::vector<DeviceRecord> devices;
    if (!in_transaction(store_, err_, [&]() -> Status {
          SOTTO_TRY_ASSIGN(devices, store_.list_devices(account->id));
          return {};
        }))
      return 1;
    out_ << "handle       " << account->handle << "\n"
         << "account      " << to_hex(account->id) << "\n"
         << "identity key " << to_hex(account->identity_key) << "\n"
         << "created      " << date_of(account->created_at_ms) << "\n"
         << "last seen    " << day_of(account->last_seen_ms)
         << (account->presence_hidden ? " (hidden from contacts)" : "") << "\n"
         << "state        "
         << (account->suspended ? "suspended: " + account->suspended_reason : "active") << "\n"
         << "devices      " << devices.size() << "\n";
    for (const auto& d : devices) {
      out_ << "  device " << d.device_id << ": created " << date_of(d.created_at_ms)
           << ", last seen " << day_of(d.last_seen_ms) << ", " << d.queue_length
           << " queued (" << d.queue_bytes << " bytes), push "
           << (d.push_url.empty() ? "none" : "set") << "\n";
    }
    return 0;
  }

  int suspend(const std::string& handle, const Args& a) {
    auto r = a.flags.find("reason");
    if (r == a.flags.end() || r->second.empty()) {
      err_ << "sotto-relay admin: suspend needs --reason TEXT: the account's devices are told "
              "it\n";
      return 2;
    }
    if (r->second.size() > 200) {
      err_ << "sotto-relay admin: --reason is at most 200 bytes\n";
      return 2;
    }
    int status = 0;
    auto account = find(handle, status);
    if (!account) return status;
    if (!in_transaction(store_, err_, [&]() -> Status {
          SOTTO_TRY_ASSIGN(bool found, store_.set_suspended(account->id, true, r->second, now_));
          (void)found;  // found above, in its own transaction; gone since: nothing to suspend
          return {};
        }))
      return 1;
    out_ << "suspended " << handle << ": its devices are disconnected and refused until "
         << "`sotto-relay admin unsuspend " << handle << "`\n";
    return 0;
  }

  int unsuspend(const std::string& handle) {
    int status = 0;
    auto account = find(handle, status);
    if (!account) return status;
    if (!account->suspended) {
      out_ << handle << " is not suspended\n";
      return 0;
    }
    if (!in_transaction(store_, err_, [&]() -> Status {
          SOTTO_TRY_ASSIGN(bool found, store_.set_suspended(account->id, false, "", now_));
          (void)found;
          return {};
        }))
      return 1;
    out_ << "lifted the suspension of " << handle << "\n";
    return 0;
  }

  int remove(const std::string& handle, const Args& a) {
    if (!a.flags.count("yes")) {
      err_ << "sotto-relay admin: delete cannot be undone: it removes the account '" << handle
           << "', its devices, prekeys and queued envelopes; add --yes to go on\n";
      return 2;
    }
    int status = 0;
    auto account = find(handle, status);
    if (!account) return status;
    if (!in_transaction(store_, err_, [&]() -> Status {
          SOTTO_TRY(store_.delete_account(account->id));
          return store_.record_action(account->id, OperatorAction::kDeleted, now_);
        }))
      return 1;
    out_ << "deleted " << handle << " (account " << to_hex(account->id)
         << "); its handle is free again\n";
    return 0;
  }

  int totals() {
    StoreTotals t;
    if (!in_transaction(store_, err_, [&]() -> Status {
          SOTTO_TRY_ASSIGN(t, store_.totals(now_));
          return {};
        }))
      return 1;
    out_ << "accounts          " << t.accounts << " (" << t.suspended << " suspended)\n"
         << "devices           " << t.devices << "\n"
         << "queued envelopes  " << t.queued_envelopes << " (" << t.queued_bytes << " bytes)\n"
         << "stored files      " << t.attachments << " (" << t.attachment_bytes << " bytes)\n"
         << "live invites      " << t.invites << "\n";
    return 0;
  }

  int invite_create(const Args& a) {
    Invite inv;
    inv.uses_left = 1;
    uint64_t days = 7;
    if (auto f = a.flags.find("uses"); f != a.flags.end()) {
      auto n = number(f->second);
      if (!n || *n == 0 || *n > 100000) {
        err_ << "sotto-relay admin: --uses is a number from 1 to 100000\n";
        return 2;
      }
      inv.uses_left = static_cast<uint32_t>(*n);
    }
    if (auto f = a.flags.find("valid-days"); f != a.flags.end()) {
      auto n = number(f->second);
      if (!n || *n == 0 || *n > 3650) {
        err_ << "sotto-relay admin: --valid-days is a number from 1 to 3650\n";
        return 2;
      }
      days = *n;
    }
    if (auto f = a.flags.find("note"); f != a.flags.end()) {
      if (f->second.size() > 200) {
        err_ << "sotto-relay admin: --note is at most 200 bytes\n";
        return 2;
      }
      inv.note = f->second;
    }
    const std::string token = make_invite_token();
    inv.token_hash = hash_invite_token(token);
    inv.created_at_ms = now_;
    inv.expires_at_ms = now_ + days * kDayMs;
    if (!in_transaction(store_, err_, [&] { return store_.add_invite(inv); })) return 1;
    out_ << token << "\n";
    out_ << "invite " << invite_id(inv.token_hash) << ": " << inv.uses_left
         << (inv.uses_left == 1 ? " use" : " uses") << ", valid until "
         << date_of(inv.expires_at_ms)
         << ". Give the token above to the user; it is not shown again.\n";
    return 0;
  }

  int invite_list() {
    std::vector<Invite> list;
    if (!in_transaction(store_, err_, [&]() -> Status {
          SOTTO_TRY_ASSIGN(list, store_.list_invites());
          return {};
        }))
      return 1;
    out_ << std::left << std::setw(14) << "ID" << std::setw(6) << "USES" << std::setw(19)
         << "CREATED" << std::setw(19) << "EXPIRES" << std::setw(10) << "STATE" << "NOTE\n";
    for (const auto& i : list) {
      const char* state =
          i.uses_left == 0 ? "used up" : (i.expires_at_ms <= now_ ? "expired" : "live");
      out_ << std::left << std::setw(14) << invite_id(i.token_hash) << std::setw(6)
           << i.uses_left << std::setw(19) << date_of(i.created_at_ms) << std::setw(19)
           << date_of(i.expires_at_ms) << std::setw(10) << state << i.note << "\n";
    }
    out_ << list.size() << (list.size() == 1 ? " invite" : " invites") << "\n";
    return 0;
  }

  int invite_revoke(const std::string& which) {
    Bytes hash = hash_invite_token(which);
    std::vector<Invite> list;
    if (!in_transaction(store_, err_, [&]() -> Status {
          SOTTO_TRY_ASSIGN(list, store_.list_invites());
          return {};
        }))
      return 1;
    std::vector<Bytes> matches;
    for (const auto& i : list)
      if ((!hash.empty() && i.token_hash == hash) ||
          (hash.empty() && which.size() >= 6 && to_hex(i.token_hash).starts_with(which)))
        matches.push_back(i.token_hash);
    if (matches.empty()) {
      err_ << "sotto-relay admin: no invite has the id or token '" << which
           << "' (`sotto-relay admin invite list` shows the ids)\n";
      return 1;
    }
    if (matches.size() > 1) {
      err_ << "sotto-relay admin: '" << which << "' starts " << matches.size()
           << " invite ids; give more of it\n";
      return 2;
    }
    if (!in_transaction(store_, err_, [&]() -> Status {
          SOTTO_TRY_ASSIGN(bool found, store_.revoke_invite(matches[0]));
          (void)found;
          return {};
        }))
      return 1;
    out_ << "revoked invite " << invite_id(matches[0]) << "\n";
    return 0;
  }

  Store& store_;
  uint64_t now_;
  std::ostream& out_;
  std::ostream& err_;
};

}  // namespace

int run_admin(Store& store, const std::vector<std::string>& args, uint64_t now_ms,
              std::ostream& out, std::ostream& err) {
  auto a = split(args, err);
  if (!a) return 2;
  return Admin(store, now_ms, out, err).run(*a);
}

}  // namespace sotto::relay
