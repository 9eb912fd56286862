"""``PADDLE_PSP_LOG_LEVEL``: the levels it names, and what is refused."""
import pytest

from paddle_psp.core import log
from paddle_psp.core.errors import UserError


@pytest.mark.parametrize('value, level', [(None, 'INFO'), ('', 'INFO'), ('debug', 'DEBUG'), (' Warning ', 'WARNING'),
                                          ('ERROR', 'ERROR'), ('loud', None), ('CRITICAL', None)])
def test_level_setting(value, level):
    environ = {} if value is None else {log.LEVEL_VAR: value}
    assert log.level_setting(environ) == level
    if level is None:
        with pytest.raises(UserError, match=f'^PADDLE_PSP_LOG_LEVEL={value!r}: expected one of DEBUG, INFO, '):
            log.check_level_setting(environ)
    else:
        log.check_level_setting(environ)
