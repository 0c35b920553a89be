# Included by llama-cpp-python's top-level project (CMAKE_PROJECT_llama_cpp_INCLUDE, set by appliance/bundle.py):
# with GGML_BACKEND_DL and GGML_CPU_ALL_VARIANTS, ggml builds one CPU backend per x86 instruction-set level
# (libggml-cpu-haswell.so, -icelake.so, ...), but llama-cpp-python installs only the targets it names. This installs
# every variant beside libggml.so in the wheel; appliance/llm/cpu.py chooses one at run time.
function(appliance_install_cpu_variants)
    get_property(targets DIRECTORY "${CMAKE_SOURCE_DIR}/vendor/llama.cpp/ggml/src" PROPERTY BUILDSYSTEM_TARGETS)
    set(found "")
    foreach(t IN LISTS targets)
        if(t MATCHES "^ggml-cpu-[a-z0-9_.]+$" AND NOT t MATCHES "-feats$")
            llama_cpp_python_install_target(${t})
            list(APPEND found ${t})
        endif()
    endforeach()
    if(NOT found)
        message(FATAL_ERROR "appliance: no ggml CPU variant targets found (was GGML_CPU_ALL_VARIANTS set?)")
    endif()
    message(STATUS "appliance: installing CPU variants ${found}")
endfunction()
cmake_language(DEFER CALL appliance_install_cpu_variants)
