#pragma once
// pervade: the umbrella header of the native C++ API.
//
//   #include <pervade/pervade.hpp>
//   pervade::DataFlowKernel dfk;
//   auto squares = dfk.submit([](int x) { return x * x; }, 7);
//   auto echo = dfk.submit(pervade::Shell{"echo done > out.txt"}, squares);
//   squares.get();  // 49
//   echo.get();     // 0, or throws BashExitFailure
#include "pervade/batch_providers.hpp"
#include "pervade/dataflow_kernel.hpp"
#include "pervade/errors.hpp"
#include "pervade/executor.hpp"
#include "pervade/observer.hpp"
#include "pervade/future.hpp"
#include "pervade/htex_executor.hpp"  // link pervade::htex to use it
#include "pervade/ids.hpp"
#include "pervade/launchers.hpp"
#include "pervade/monitoring.hpp"
#include "pervade/provider.hpp"
#include "pervade/shell.hpp"
#include "pervade/state.hpp"
#include "pervade/task.hpp"
#include "pervade/thread_pool_executor.hpp"
