"""``--quantize int8`` is offered only where oneDNN's int8 convolutions agree with fp32: CPUs with VNNI
(or AMX), and no oneDNN cap below them. CPU features are simulated with /proc/cpuinfo texts."""
import pytest

from paddle_psp.core import machine
from paddle_psp.core.errors import UserError
from paddle_psp.inference import quantize


def cpuinfo(name, flags):
    return f'processor\t: 0\nvendor_id\t: X\nmodel name\t: {name}\nflags\t\t: fpu sse2 avx avx2 fma {flags}\n'


ZEN3 = cpuinfo('AMD EPYC 7B13 64-Core Processor', 'sha_ni vaes')
ZEN4 = cpuinfo('AMD EPYC 9B14', 'avx512f avx512bw avx512_vnni avx512_bf16')
SAPPHIRE_RAPIDS = cpuinfo('Intel(R) Xeon(R) Platinum 8481C', 'avx512f avx512_vnni avx_vnni amx_int8 amx_tile')
ALDER_LAKE = cpuinfo('12th Gen Intel(R) Core(TM) i7-12700', 'avx_vnni')
SKYLAKE = cpuinfo('Intel(R) Xeon(R) Gold 6148', 'avx512f avx512bw avx512cd')


@pytest.mark.parametrize('text', [ZEN4, SAPPHIRE_RAPIDS, ALDER_LAKE, ''], ids=['zen4', 'spr', 'adl', 'no cpuinfo'])
def test_int8_offered_with_vnni(text):
    assert quantize.int8_refusal(text, environ={}) is None


@pytest.mark.parametrize('text, name', [(ZEN3, 'AMD EPYC 7B13'), (SKYLAKE, 'Xeon(R) Gold 6148')])
def test_int8_refused_without_vnni_naming_the_cpu_and_the_flags(text, name):
    reason = quantize.int8_refusal(text, environ={})
    assert name in reason and 'no VNNI' in reason and 'avx512_vnni, avx_vnni, amx_int8' in reason
    assert 'expected --quantize none' in reason and '\n' not in reason
    assert quantize.int8_refusal(text, environ={'PADDLE_PSP_UNSAFE_INT8': '1'}) is None  # explicit, named unsafe


@pytest.mark.parametrize('variable', ['ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA'])
@pytest.mark.parametrize('isa, refused', [('AVX2', True), ('avx512_core', True), ('AVX512_CORE_VNNI', False),
                                          ('AVX2_VNNI', False), ('AVX512_CORE_AMX', False), ('ALL', False)])
def test_a_onednn_cap_below_vnni_refuses_int8(variable, isa, refused):
    reason = quantize.int8_refusal(SAPPHIRE_RAPIDS, environ={variable: isa})
    assert (reason is not None) == refused
    if refused:
        assert reason.startswith(f'{variable}={isa} caps oneDNN below VNNI')


def test_check_quantize_refuses_where_int8_runs_not_for_export(monkeypatch):
    monkeypatch.setattr(machine, 'read_cpuinfo', lambda: ZEN3)
    monkeypatch.delenv('PADDLE_PSP_UNSAFE_INT8', raising=False)
    monkeypatch.delenv('ONEDNN_MAX_CPU_ISA', raising=False)
    with pytest.raises(UserError, match=r'^--quantize int8: this CPU \(AMD EPYC 7B13'):
        quantize.check_quantize('int8', 4)
    assert quantize.check_quantize('int8', 4, runs=False) is True   # export writes it for another machine
    assert quantize.check_quantize('none', 4) is False
