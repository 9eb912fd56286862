"""Download one URL into a partial file over HTTP(S): resumed with Range requests, retried, time-bounded.

Transient failures (connection errors, timeouts, HTTP 408/425/429/5xx, short bodies) are retried with
exponential backoff. A :class:`RetryPolicy` bounds how long a download may go without receiving any of the
file: each connect or read waits at most ``timeout`` seconds, and no attempt starts (and no backoff waits)
past ``deadline`` seconds since the start or since the last bytes arrived. So a server that accepts and
never answers, or stalls mid-body, fails in bounded time; a slow download that keeps receiving data is
never cut. What is still missing at the end is one line naming the URL.

A full or read-only disk is not retried: the partial file is deleted and one line names it.
"""
import dataclasses
import http.client
import os
import re
import time
import urllib.error
import urllib.request

from paddle_psp.core.errors import UserError, one_line
from paddle_psp.core.outputs import writing
from paddle_psp.core.console import Progress
from paddle_psp.core.files import CHUNK_BYTES

RETRY_STATUS = (408, 425, 429)
USER_AGENT = 'paddle-psp (urllib)'


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a download is tried.

    Attributes:
        attempts (int): Tries in all, the first included.
        base_delay (float): Seconds before the second try; doubled before each later one.
        max_delay (float): Upper bound of one wait, in seconds.
        timeout (float): Longest wait, in seconds, for a connection or for the next bytes of an answer.
        deadline (float): Seconds without receiving any of the file (from the start, or from the last
            bytes received) after which no attempt starts and no backoff waits.
    """
    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 4.0
    timeout: float = 8.0
    deadline: float = 40.0

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f'RetryPolicy.attempts must be at least 1, got {self.attempts}')

    def delay(self, failures):
        """Seconds to wait after ``failures`` failed tries."""
        return min(self.max_delay, self.base_delay * 2 ** (failures - 1))

    def worst_case(self):
        """Longest time a download receiving nothing can take, in seconds.

        Every attempt waits at most ``timeout`` for each step, and at the deadline nothing new starts, so
        the bound is the smaller of all attempts' timeouts and waits, and the deadline plus one timeout
        (a step that started just before it).
        """
        waits = sum(self.delay(failures) for failures in range(1, self.attempts))
        return min(self.attempts * self.timeout + waits, self.deadline + self.timeout)


DEFAULT_RETRY = RetryPolicy()


class Transient(Exception):
    """A failure worth another try (network, server overload, short body)."""


class _Clock:
    """Seconds left before a download that receives nothing gives up; bytes received restart it."""

    def __init__(self, limit):
        self.limit = limit
        self.started = self.restarted = time.monotonic()

    def restart(self):
        self.restarted = time.monotonic()

    def left(self):
        return self.limit - (time.monotonic() - self.restarted)

    def elapsed(self):
        return time.monotonic() - self.started


def download(url, part, retry, advice, label=None):
    """Complete the partial file ``part`` from ``url``, retrying transient failures within ``retry``'s bounds.

    Args:
        url (str): The http(s) or file URL.
        part (str): The partial file: appended to (Range request) when it exists, else created.
        retry (RetryPolicy): Attempts, backoff and time bounds.
        advice (str): What the user can do when the URL stays unreachable (ends the message).
        label (str, optional): Name on the progress bar. Default: the file name of ``part``.

    Raises:
        UserError: One line naming ``url`` (unreachable, HTTP error, HTML answer) or ``part`` (disk full).
    """
    clock = _Clock(retry.deadline)
    attempts, reason = 0, 'no attempt made'
    while attempts < retry.attempts:
        left = clock.left()
        if left <= 0:
            break
        attempts += 1
        try:
            return _download_once(url, part, min(retry.timeout, left), clock, label)
        except Transient as err:
            reason = str(err)
        if attempts < retry.attempts:
            pause = retry.delay(attempts)
            if pause >= clock.left():
                break  # the next attempt would start past the deadline
            time.sleep(pause)
    raise UserError(f'{url}: cannot download ({reason}) after {attempts} attempts in '
                    f'{clock.elapsed():.0f} s; expected a reachable URL: {advice}')


def discard(path):
    """Delete the file ``path`` if it exists."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def looks_like_html(head):
    """Whether the first bytes of a body are an HTML page (a login or error page, not a checkpoint)."""
    text = head.lstrip().lower()
    return text.startswith((b'<!doctype html', b'<html', b'<head', b'<body')) or b'<html' in text


def html_error(url):
    """The UserError for a URL that answered HTML."""
    return UserError(f'{url}: URL answered HTML instead of a checkpoint; expected a .pdparams file or an '
                     'archive (a login page, an error page or a wrong link?)')


def _download_once(url, part, timeout, clock, label):
    offset = os.path.getsize(part) if os.path.isfile(part) else 0
    headers = {'User-Agent': USER_AGENT}
    if offset:
        headers['Range'] = f'bytes={offset}-'
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            _receive(response, url, part, offset, clock, label)
    except urllib.error.HTTPError as err:
        _raise_for_status(err, url, part)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise Transient(one_line(getattr(err, 'reason', err))) from None


def _raise_for_status(err, url, part):
    status = f'HTTP {err.code} {err.reason}'
    if err.code == 416:  # the partial file is no prefix of what the server has now: start over
        discard(part)
        raise Transient(status)
    if err.code in RETRY_STATUS or err.code >= 500:
        raise Transient(status)
    raise UserError(f'{url}: {status}; expected 200 OK (is the URL right?)')


def _receive(response, url, part, offset, clock, label):
    """Write the body of ``response`` to ``part``, appending when it resumes at ``offset``."""
    if 'text/html' in response.headers.get('Content-Type', '').lower():
        discard(part)
        raise html_error(url)
    if (response.status or 200) != 206:
        offset = 0  # a full answer (the server may ignore Range): start the file over
    elif _content_range_start(response) != offset:
        discard(part)
        raise Transient('the server resumed at another offset than asked')
    length = _content_length(response)
    total = None if length is None else offset + length
    with writing(part, removed=part):  # a full disk: the partial file only takes space, delete it
        out = open(part, 'ab' if offset else 'wb')
    with out, Progress(label or os.path.basename(part), total, offset, unit='MiB', scale=2 ** 20) as progress:
        received = _copy(response, out, part, progress, clock)
        with writing(part, removed=part):
            out.flush()
            os.fsync(out.fileno())
    if length is not None and received != length:
        raise Transient(f'the body ended after {offset + received} of {total} bytes')


def _content_range_start(response):
    match = re.match(r'\s*bytes\s+(\d+)-', response.headers.get('Content-Range', ''))
    return int(match.group(1)) if match else None


def _content_length(response):
    value = response.headers.get('Content-Length', '')
    return int(value) if value.strip().isdigit() else None


def _copy(response, out, part, progress, clock):
    received = 0
    # read1: what has arrived, at most one read of the socket; read would wait for the whole chunk, and a
    # timeout then would lose what had arrived instead of keeping it for the resumed attempt.
    read = getattr(response, 'read1', response.read)
    for chunk in iter(lambda: read(CHUNK_BYTES), b''):
        with writing(part, removed=part):
            out.write(chunk)
        received += len(chunk)
        clock.restart()
        progress.advance(len(chunk))
    return received
