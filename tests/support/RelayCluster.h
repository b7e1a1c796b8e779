// Relay nodes in cluster mode for tests: real sotto-relay processes sharing a throwaway
// PostgreSQL (the store, PostgresServer::shared()), a throwaway redis-server (the bus) and one
// attachments directory. A failure to start any of them fails the test that made it.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "PostgresServer.h"
#include "RedisServer.h"
#include "RelayProcess.h"

namespace sotto::test {

struct RelayCluster {
  explicit RelayCluster(int count = 3) {
    auto pg = PostgresServer::shared();
    if (!pg.ok()) {
      ADD_FAILURE() << "no PostgreSQL for cluster mode: " << pg.error().message;
      return;
    }
    postgres = *pg;
    auto db = postgres->create_database("cluster");
    if (!db.ok()) {
      ADD_FAILURE() << db.error().message;
      return;
    }
    store = postgres->url(*db);
    auto r = RedisServer::start();
    if (!r.ok()) {
      ADD_FAILURE() << "no redis-server for cluster mode: " << r.error().message;
      return;
    }
    redis = std::move(*r);
    char tmpl[] = "/tmp/sotto-cluster-XXXXXX";
    if (::mkdtemp(tmpl)) shared_dir = tmpl;
    for (int i = 0; i < count; ++i) add_node();
  }
  ~RelayCluster() {
    nodes.clear();
    std::error_code ec;
    if (!shared_dir.empty()) std::filesystem::remove_all(shared_dir, ec);
  }
  RelayProcess& add_node() {
    RelayProcess::Options o;
    o.data_dir = shared_dir;
    o.extra_args = {"--store", store, "--bus", redis->address(), "--node-id",
                    "n" + std::to_string(nodes.size()), "--cluster-claim-ttl-ms", "3000"};
    nodes.push_back(std::make_unique<RelayProcess>(o));
    return *nodes.back();
  }
  bool ready() const { return postgres && redis && nodes.size() > 0; }
  RelayProcess& operator[](size_t i) { return *nodes.at(i); }

  PostgresServer* postgres = nullptr;
  std::string store;
  std::unique_ptr<RedisServer> redis;
  std::filesystem::path shared_dir;
  std::vector<std::unique_ptr<RelayProcess>> nodes;
};

}  // namespace sotto::test
