// Housekeeping: operator actions, link channel and storage expiry, the bus-down poll, and
// closing every connection at shutdown.
#include <algorithm>
#include <filesystem>

#include "Log.h"
#include "Relay.h"
#include "relay/Common.h"

namespace sotto::relay {
namespace {

constexpr uint64_t kBusDownPollMs = 2'000;
constexpr uint64_t kOperatorPollMs = 2'000;

}  // namespace

void Relay::apply_operator_actions() {
  if (actions_polling_.exchange(true)) return;
  auto actions = std::make_shared<std::vector<OperatorAction>>();
  uint64_t after = actions_seq_;
  bool queued = store_.submit(
      [actions, after](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*actions, s.actions_since(after));
        return {};
      },
      [this, actions](const Status& st) {
        actions_polling_ = false;
        if (!st.ok()) return;
        for (const OperatorAction& a : *actions) {
          actions_seq_ = std::max<uint64_t>(actions_seq_, a.seq);
          if (a.kind == OperatorAction::kUnsuspended) continue;
          std::vector<uint32_t> devices = registry_.account_devices(a.account);
          uint16_t code = a.kind == OperatorAction::kSuspended ? 4003 : 4001;
          for (uint32_t d : devices) {
            std::string key = device_key(a.account, d);
            if (auto peer = find_peer(key))
              if (auto conn = peer->conn.lock()) conn->post([conn, code] { conn->close(code); });
          }
          if (!devices.empty())
            log_info("operator_action_applied",
                     {{"action", a.kind == OperatorAction::kSuspended ? "suspended" : "deleted"},
                      {"connections_closed", devices.size()}});
        }
      });
  if (!queued) actions_polling_ = false;
}

void Relay::tick() {
  uint64_t now = clock_();
  // What an operator did with `sotto-relay admin` (in another process, or on another node).
  if (now >= last_actions_ms_ + kOperatorPollMs) {
    last_actions_ms_ = now;
    apply_operator_actions();
  }
  // Cluster mode without its bus: nothing announces what other nodes commit for devices here,
  // so each reads its queue every poll interval (a bounded delay instead of none).
  if (bus_ && !bus_->up() && now >= last_poll_ms_ + kBusDownPollMs) {
    last_poll_ms_ = now;
    pump_all_local();
  }
  uint64_t last_expiry = last_expiry_ms_;
  bool run_expiry = now >= last_expiry + config_.expiry_interval_ms &&
                    last_expiry_ms_.compare_exchange_strong(last_expiry, now);
  registry_.sweep_wakes(now, config_.push_coalesce_ms);
  for (const auto& code : registry_.expired_links(now)) end_link(code, 4000);
  if (!run_expiry) return;
  for (RateLimiter* rl :
       {&upgrade_ip_, &register_ip_, &provision_ip_, &provision_lookup_account_, &lookup_device_,
        &bundles_device_, &bundles_target_, &send_device_, &presence_device_, &attachment_account_,
        &attachment_bytes_, &download_device_})
    rl->sweep(now);
  auto result = std::make_shared<ExpiryResult>();
  auto total = std::make_shared<uint64_t>(0);
  store_.submit(
      [now, result, total](Store& s) -> Status {
        SOTTO_TRY_ASSIGN(*result, s.expire(now));
        SOTTO_TRY_ASSIGN(*total, s.total_queued());
        return {};
      },
      [this, result, total](const Status& st) {
        if (!st.ok()) return;
        metrics_.envelopes_expired.fetch_add(result->envelopes, std::memory_order_relaxed);
        metrics_.queue_depth = static_cast<int64_t>(*total);
        for (const auto& id : result->attachments) {
          std::error_code ec;
          std::filesystem::remove(attachment_path(id), ec);
        }
        if (result->envelopes || !result->attachments.empty())
          log_info("expired",
                   {{"envelopes", result->envelopes}, {"attachments", result->attachments.size()}});
      });
}

void Relay::close_all(uint16_t code) {
  for (auto& p : registry_.peers(/*unauthenticated=*/true))
    if (auto conn = p->conn.lock()) conn->post([conn, code] { conn->close(code); });
}

}  // namespace sotto::relay
