"""benchmarks/profile_update.py: profiler events sorted into the categories docs/speed.md reads."""
from __future__ import annotations

import pytest

from benchmarks.profile_update import CATEGORIES, category


@pytest.mark.parametrize("name, expected", [
    ("aoti_torch_cpu_bmm_out", "gemm"), ("aoti_torch_cpu_baddbmm_out", "gemm"), ("aoti_torch_cpu_addmm_out", "gemm"),
    ("aoti_torch_cpu_mm_out", "gemm"), ("aten::mm", "gemm"),
    ("graph_0_cpp_fused__foreach_add__foreach_addcdiv__foreach_div_3", "adam"),
    ("graph_1_cpp_fused_addcmul_native_layer_norm_relu_7", "elementwise"),
    ("graph_0_cpp_fused_threshold_backward_27", "elementwise"),
    ("inductor_wrapper_call", "wrapper"), ("TorchDynamo Cache Lookup", "guards"),
    ("aten::index", "outside"), ("aten::copy_", "outside"), ("## Call CompiledFxGraph f3", "outside"),
])
def test_each_profiler_event_lands_in_its_category(name, expected):
    assert category(name) == expected and expected in CATEGORIES
