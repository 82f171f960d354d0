# Installs pervade into a scratch prefix, then configures, builds and runs examples/cpp
# against it with find_package(pervade): the path a C++ user takes.
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
