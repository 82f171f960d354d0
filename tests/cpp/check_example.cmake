# Installs pervade into a scratch prefix, then configures, builds and runs examples/cpp
# against it with find_package(pervade): the path a C++ user takes (pipeline on threads,
# htex_shell on a pervade-pool started from the installed bin/).
set(prefix ${BUILD_DIR}/prefix)
file(REMOVE_RECURSE ${BUILD_DIR})
foreach(step
    "${CMAKE_COMMAND};-S;${SOURCE_DIR};-B;${BUILD_DIR}/lib;-DCMAKE_BUILD_TYPE=Release;-DCMAKE_INSTALL_PREFIX=${prefix}"
    "${CMAKE_COMMAND};--build;${BUILD_DIR}/lib;-j2"
    "${CMAKE_COMMAND};--install;${BUILD_DIR}/lib"
    "${CMAKE_COMMAND};-S;${SOURCE_DIR}/examples/cpp;-B;${BUILD_DIR}/example;-DCMAKE_PREFIX_PATH=${prefix}"
    "${CMAKE_COMMAND};--build;${BUILD_DIR}/example"
    "${BUILD_DIR}/example/pipeline;${BUILD_DIR}/work")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${step}\n${out}\n${err}")
  endif()
endforeach()
if(NOT out MATCHES "sum of squares = 332833500")
  message(FATAL_ERROR "unexpected example output:\n${out}")
endif()
message(STATUS "${out}")

# The HighThroughputExecutor example: pervade-pool comes from the installed bin/ (the default).
if(NOT EXISTS ${prefix}/bin/pervade-pool)
  message(FATAL_ERROR "cmake --install did not install bin/pervade-pool")
endif()
execute_process(COMMAND ${BUILD_DIR}/example/htex_shell ${BUILD_DIR}/htex_work
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0 OR NOT out MATCHES "distinct words = 2" OR NOT out MATCHES "caught: .*exit code 3")
  message(FATAL_ERROR "htex_shell failed (${rc}):\n${out}\n${err}")
endif()
message(STATUS "${out}")
