// Backend: one profile's sotto::Client for the desktop app, and the only way the UI reaches it.
//
// Thread rule: a Backend lives on the GUI thread. Its signals are emitted there: the Client's
// executor posts every listener call to this object with Qt::QueuedConnection. The UI never
// calls the Client on the GUI thread: local() runs a call on a worker thread that keeps calls
// in order (database work), remote() on a pool for calls that wait for the relay, and both
// hand the result back to the GUI thread, to `context` if it still exists.
#pragma once

#include <QObject>
#include <QPointer>
#include <QString>
#include <QThreadPool>
#include <atomic>
#include <functional>
#include <memory>
#include <type_traits>

#include "sotto/Client.h"

namespace sotto::desktop {

class Backend : public QObject {
  Q_OBJECT

 public:
  explicit Backend(QObject* parent = nullptr);
  ~Backend() override;  // waits for running calls (asking long waits to stop), then closes

  // Opens (or creates) a profile with a passphrase and makes its Client; connects when the
  // profile has an account. `done` gets ok, or the error to show (kWrongKey, kBusy...).
  void open(const QString& profile_dir, const QString& passphrase, const QString& relay_url,
            const QString& device_name, std::function<void(Status)> done);
  bool is_open() const { return client_ != nullptr; }

  // Runs `work(client)` off the GUI thread; `done(result)` then runs on the GUI thread unless
  // `context` was destroyed meanwhile. Calls given to local() run one at a time, in order.
  template <class Work, class Done>
  void local(QObject* context, Work work, Done done) {
    start(local_pool_, context, std::move(work), std::move(done));
  }
  template <class Work, class Done>
  void remote(QObject* context, Work work, Done done) {
    start(remote_pool_, context, std::move(work), std::move(done));
  }
  // Set when the Backend is closing: long waits (linking, transfers) should stop.
  const std::atomic<bool>* stopping() const { return &stopping_; }

  // Account state the UI shows everywhere, kept up to date on the GUI thread.
  const QString& account() const { return account_; }
  const QString& handle() const { return handle_; }
  ConnectionState connection_state() const { return state_; }
  void set_account(const AccountInfo& info);

 signals:
  void message_received(const sotto::Message& message);
  void message_status(sotto::ConversationId conversation, const QString& id,
                      sotto::MessageStatus status);
  void message_changed(const sotto::Message& message);
  void message_removed(sotto::ConversationId conversation, const QString& id);
  void conversation_changed(sotto::ConversationId conversation);
  void connection_changed(sotto::ConnectionState state, const QString& detail);
  void identity_changed(const QString& account, const QString& handle);
  void devices_changed();
  void typing(sotto::ConversationId conversation, const QString& account, bool typing);
  void presence(const QString& account, bool online, quint64 last_seen_ms);
  void account_ready();  // registered, linked, or opened with an account

 private:
  class Listener;

  template <class Work, class Done>
  void start(QThreadPool& pool, QObject* context, Work work, Done done) {
    using R = std::invoke_result_t<Work, Client&>;
    Client* client = client_.get();
    if (!client) return;
    QPointer<QObject> guard(context);
    pool.start([this, client, guard, work = std::move(work), done = std::move(done)]() mutable {
      auto result = std::make_shared<R>(work(*client));
      QMetaObject::invokeMethod(
          this,
          [guard, result, done = std::move(done)]() mutable {
            if (guard) done(std::move(*result));
          },
          Qt::QueuedConnection);
    });
  }

  std::unique_ptr<Client> client_;
  std::shared_ptr<Listener> listener_;
  QThreadPool local_pool_;
  QThreadPool remote_pool_;
  std::atomic<bool> stopping_{false};
  QString account_;
  QString handle_;
  ConnectionState state_ = ConnectionState::kOffline;
};

}  // namespace sotto::desktop
