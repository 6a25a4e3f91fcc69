"""The README and docs/*.md: every relative link and anchor resolves, and the first steps come first."""
import glob
import os
import re

from conftest import REPO

PAGES = [os.path.join(REPO, 'README.md'), *sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))]
FENCE = re.compile(r'^\s*(```|~~~)')
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')      # [text](target "title"), images too
HTML_ANCHOR = re.compile(r'<a\s+(?:id|name)="([^"]+)"')


def prose_lines(text):
    """The lines outside fenced code blocks, inline code replaced by a placeholder (its brackets are no links)."""
    inside = False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside:
            yield re.sub(r'`[^`]*`', lambda m: 'code' if m.group(0).strip('`') else '', line), line


def slug(heading):
    """GitHub's anchor of a heading: its text lower-cased, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading).replace('`', '').replace('*', '')
    return re.sub(r'[^\w\- ]', '', text.strip().lower()).replace(' ', '-')


def anchors(path):
    """Every anchor a page has: its headings' slugs (a repeated one gets -1, -2, ...) and <a id/name> tags."""
    found, seen = set(), {}
    with open(path, encoding='utf-8') as f:
        for _, raw in prose_lines(f.read()):
            heading = re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', raw)
            if heading:
                base = slug(heading.group(1))
                found.add(base if base not in seen else f'{base}-{seen[base]}')
                seen[base] = seen.get(base, 0) + 1
            found.update(HTML_ANCHOR.findall(raw))
    return found


def broken_links(path):
    """(target, why) for each relative link of a page whose file or anchor does not exist."""
    broken = []
    with open(path, encoding='utf-8') as f:
        text = f.read()
    for line, _ in prose_lines(text):
        for target in LINK.findall(line):
            if re.match(r'[a-z][a-z0-9+.-]*:', target, re.I):      # http:, https:, mailto: ...
                continue
            file, _, anchor = target.partition('#')
            where = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            if not os.path.exists(where):
                broken.append((target, 'no such file'))
            elif anchor and (not where.endswith('.md') or anchor not in anchors(where)):
                broken.append((target, 'no such anchor'))
    return broken


def test_every_relative_link_and_anchor_resolves():
    assert len(PAGES) > 1
    assert {os.path.relpath(p, REPO): broken_links(p) for p in PAGES} == {os.path.relpath(p, REPO): [] for p in PAGES}


def test_slugs_are_githubs():
    assert slug("The three benchmarks: `--dataset ucf|shanghai|xd`") == 'the-three-benchmarks---dataset-ucfshanghaixd'
    assert slug("Are these RTFM's features?") == 'are-these-rtfms-features'
    assert slug('Features of your videos: `extract_features.py`') == 'features-of-your-videos-extract_featurespy'
    assert slug('Model selection: `--select`') == 'model-selection---select'


def test_the_checker_finds_what_is_broken(tmp_path):
    (tmp_path / 'other.md').write_text('# Other\n\n## Notes\n\n<a id="here"></a>\n')
    page = tmp_path / 'page.md'
    page.write_text('# Page\n\n## Results\n\n## Results\n\n```sh\n# not a heading\n[x](#in-code)\n```\n\n'
                    '[a](#results) [b](#results-1) [c](#results-2) [d](other.md#notes) [e](other.md#here)\n'
                    '[f](other.md#nowhere) ![g](missing.png) [h](https://example.com/#x) `[i](#in-code-span)`\n'
                    '[j](#not-a-heading) [k](other.md)\n')
    assert broken_links(str(page)) == [('#results-2', 'no such anchor'), ('other.md#nowhere', 'no such anchor'),
                                       ('missing.png', 'no such file'), ('#not-a-heading', 'no such anchor')]


def test_quick_start_comes_first_and_the_glossary_defines_its_terms():
    with open(PAGES[0], encoding='utf-8') as f:
        lines = [raw for _, raw in prose_lines(f.read())]
    sections = [line[3:] for line in lines if line.startswith('## ')]
    assert sections[0] == 'Quick start' and 'Your video in three commands' in sections and 'Glossary' in sections
    start = lines.index('## Glossary') + 1
    glossary = lines[start:next(i for i in range(start, len(lines)) if lines[i].startswith('## '))]
    terms = [row.split('|')[1].strip().strip('`') for row in glossary if row.startswith('| ')]
    for term in ['snippet', 'crop', 'chunk', 'segment', 'pooled', 'da', 'r', 'T', 'gt', 'preformer', 'window', 'hop',
                 'event', 'threshold']:
        assert term in terms
