"""The docs cannot rot: every relative link and ``#anchor`` in README.md, the top-level guides and docs/
resolves, and every ``paddleseg VERB ...`` command line in their code blocks parses with the real parsers."""
import contextlib
import io
import os
import re
import shlex

import pytest

import paddle_psp_cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = (['README.md', 'CONTRIBUTING.md', 'CHANGELOG.md']
        + sorted(os.path.join('docs', name) for name in os.listdir(os.path.join(REPO_ROOT, 'docs'))
                 if name.endswith('.md')))
FENCE = re.compile(r'^\s*(```|~~~)')
LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)')
HTML_ANCHOR = re.compile(r'<a\s+(?:id|name)="([^"]+)"')
SEPARATORS = {'&&', '||', ';', '|', '&', '(', ')'}
LEADERS = {'nohup', 'time', 'exec'}


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def split_blocks(text):
    """(prose lines, code blocks as lists of lines) of a markdown text."""
    prose, blocks, block = [], [], None
    for line in text.splitlines():
        if FENCE.match(line):
            if block is None:
                block = []
            else:
                blocks.append(block)
                block = None
        elif block is None:
            prose.append(line)
        else:
            block.append(line)
    return prose, blocks


def anchors(path):
    """GitHub's anchors of a markdown file: its headings, slugged and numbered, and explicit HTML anchors."""
    prose, _ = split_blocks(read(path))
    found, seen = set(HTML_ANCHOR.findall('\n'.join(prose))), {}
    for line in prose:
        match = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not match:
            continue
        slug = re.sub(r'[^\w\- ]', '', match.group(1).replace('`', '').strip().lower()).replace(' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f'{slug}-{count}')
    return found


def broken_links(path):
    """The relative links (and anchors) of the markdown file ``path`` that do not resolve."""
    prose, _ = split_blocks(read(path))
    text = re.sub(r'`[^`]*`', '', '\n'.join(prose))
    broken = []
    for groups in LINK.findall(text):
        target = groups[0] or groups[1]
        if re.match(r'^[a-z]+:', target):
            continue
        file_part, _, anchor = target.partition('#')
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(linked):
            broken.append(f'{target}: no such file')
        elif anchor and (not linked.endswith('.md') or anchor not in anchors(linked)):
            broken.append(f'{target}: no such anchor')
    return broken


def command_lines(path):
    """Every ``paddleseg ...`` command (as argument lists after ``paddleseg``) in the code blocks of ``path``."""
    _, blocks = split_blocks(read(path))
    commands = []
    for block in blocks:
        for line in '\n'.join(block).replace('\\\n', ' ').splitlines():
            line = line.replace('$(which paddleseg)', 'paddleseg')
            if re.match(r'\s*paddleseg [\w-]+: error: ', line):
                continue   # a command's output (its one-line error), not a command
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            try:
                tokens = list(lexer)
            except ValueError:
                continue
            commands += [(line.strip(), args) for args in _paddleseg_segments(tokens)]
    return commands


def _paddleseg_segments(tokens):
    """The arguments of each ``paddleseg`` command among shell ``tokens`` (comments already gone)."""
    segments, current = [], []
    for token in tokens + [';']:
        if token in SEPARATORS:
            segments.append(current)
            current = []
        else:
            current.append(token)
    found = []
    for segment in segments:
        words = _without_redirections(segment)
        while words and (words[0] in LEADERS or re.match(r'^[A-Z_][A-Z0-9_]*=', words[0])):
            words = words[1:]
        launched = 'paddle.distributed.launch' in words
        for index, word in enumerate(words):
            if os.path.basename(word) == 'paddleseg' and (index == 0 or launched):
                found.append(words[index + 1:])
                break
    return found


def _without_redirections(words):
    kept, skip = [], False
    for index, word in enumerate(words):
        if skip:
            skip = False
        elif word.startswith(('>', '<')):
            skip = True
            if kept and kept[-1].isdigit() and index > 0:
                kept.pop()
        else:
            kept.append(word)
    return kept


def parse_error(args):
    """None if ``paddleseg ARGS`` parses (or prints help / the version), else the parser's message."""
    if not args or args[0] in ('--version', '-h', '--help'):
        return None
    verb = paddle_psp_cli.ALIASES.get(args[0], args[0])
    if verb not in paddle_psp_cli.VERBS:
        return f'unknown verb {args[0]!r}'
    stream = io.StringIO()
    try:
        with contextlib.redirect_stderr(stream), contextlib.redirect_stdout(io.StringIO()):
            paddle_psp_cli.PARSERS[verb]().parse_args(args[1:])
    except SystemExit as exit_info:
        return None if exit_info.code == 0 else stream.getvalue().strip()
    return None


@pytest.mark.parametrize('doc', DOCS)
def test_every_relative_link_and_anchor_resolves(doc):
    assert broken_links(os.path.join(REPO_ROOT, doc)) == []


@pytest.mark.parametrize('doc', DOCS)
def test_every_paddleseg_command_in_a_code_block_parses(doc):
    failures = [f'{line}\n    -> {error}' for line, args in command_lines(os.path.join(REPO_ROOT, doc))
                for error in [parse_error(args)] if error]
    assert not failures, '\n'.join(failures)


def test_the_guide_shows_every_verb():
    shown = {args[0] for doc in DOCS for _, args in command_lines(os.path.join(REPO_ROOT, doc)) if args}
    assert set(paddle_psp_cli.VERBS) <= shown, sorted(set(paddle_psp_cli.VERBS) - shown)


def test_the_checks_catch_rot(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('# Title `x`\n\n## Second: part\n\n[ok](#title-x) [ok too](#second-part) [gone](#nope) '
                    '[missing](other.md) [web](https://example.com)\n\n```bash\n'
                    'paddleseg train --config quickstart --iters 2 2>&1 | tee train.log\n'
                    'nohup paddleseg val --config quickstart \\\n    --model_path m --flip_horizontl > val.log &\n'
                    'python -m paddle.distributed.launch --nproc_per_node 2 $(which paddleseg) train --confg x\n'
                    'pip install paddleseg\n```\n')
    assert broken_links(str(page)) == ['#nope: no such anchor', 'other.md: no such file']
    commands = command_lines(str(page))
    assert [args[0] for _, args in commands] == ['train', 'val', 'train']
    assert commands[0][1][-2:] == ['--iters', '2']
    errors = [parse_error(args) for _, args in commands]
    assert errors[0] is None and 'flip_horizontl' in errors[1] and 'paddleseg train: error' in errors[2]


def test_every_environment_variable_of_the_package_is_in_the_flags_reference():
    names = set()
    for folder in ('paddle_psp', 'paddle_psp_cli'):
        for root, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
            for name in files:
                if name.endswith('.py'):
                    names |= set(re.findall(r'PADDLE_PSP_[A-Z0-9_]*[A-Z0-9]', read(os.path.join(root, name))))
    prose, _ = split_blocks(read(os.path.join(REPO_ROOT, 'docs', 'flags.md')))
    section = '\n'.join(prose).split('## Environment variables')[1]
    listed = set(re.findall(r'^\| `(\w+)` \|', section, flags=re.M))
    assert len(names) >= 7 and names <= listed, sorted(names - listed)
