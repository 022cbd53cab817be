// moelab-cli devices: which backends this build has and which can run here.
#include <CLI/CLI.hpp>
#include <ostream>

#include "cli.h"
#include "moelab/core/backends.h"

namespace moelab::cli {

void add_devices(CLI::App& app, Io io, Action& action) {
  auto* sub = app.add_subcommand("devices", "List compute backends and whether they can run here");
  sub->callback([io, &action] {
    action = [io] {
      for (const auto& b : probe_backends())
        io.out << b.name << ": " << (b.available ? "available" : "unavailable") << " - " << b.detail
               << '\n';
      return kOk;
    };
  });
}

}  // namespace moelab::cli
