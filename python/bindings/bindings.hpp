#pragma once
// The parts of pervade._native defined outside module.cpp; NB_MODULE in module.cpp calls them.
#include <nanobind/nanobind.h>

#include "pervade/observer.hpp"

namespace pervade::bindings {

// Provider, Launcher and their factories (providers.cpp).
void bind_providers(nanobind::module_& m);

// An engine observer made in Python (_native.Observer); Kernel(observers=[...]) takes these.
struct ObserverHandle {
  ObserverPtr ptr;
};
// LogObserver (log_observer.cpp).
void bind_log_observer(nanobind::module_& m);
// The monitoring database and call descriptions (monitoring.cpp).
void bind_monitoring(nanobind::module_& m);

// staging_fetch, the transfers of File staging (staging.cpp).
void bind_staging(nanobind::module_& m);

}  // namespace pervade::bindings
