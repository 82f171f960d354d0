#pragma once
// The parts of pervade._native defined outside module.cpp; NB_MODULE in module.cpp calls them.
#include <nanobind/nanobind.h>

namespace pervade::bindings {

// Provider, Launcher and their factories (providers.cpp).
void bind_providers(nanobind::module_& m);

}  // namespace pervade::bindings
