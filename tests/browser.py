"""Headless Chromium for page.py's page: the system's Chromium (Debian's chromium package) driven by Playwright for
Python, launched with the flags that keep it off the network. The tests use launch(); run as a script, it takes a
screenshot of a results folder's page (docs/page.png is made so):

    python tests/browser.py results/videos docs/page.png
"""
import importlib.util
import os
import sys

CHROMIUM = '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']


def missing():
    """Why no browser can run here, or None."""
    if importlib.util.find_spec('playwright') is None:
        return 'Playwright for Python is not installed (pip install -r requirements.txt)'
    if not os.path.isfile(CHROMIUM):
        return f'no Chromium at {CHROMIUM} (Debian: apt-get install chromium)'
    return None


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)


def open_page(page, path):
    """Load a page written by page.py from a file and wait until its script has built it."""
    page.goto('file://' + os.path.abspath(path))
    page.wait_for_selector('body[data-ready]', state='attached')


def screenshot(out_dir, png, width=1200, height=860):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={'width': width, 'height': height})
        open_page(page, os.path.join(out_dir, 'index.html'))
        page.wait_for_timeout(300)  # the timelines are drawn as they come into view
        page.screenshot(path=png)
        browser.close()


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit('usage: python tests/browser.py OUT_DIR PNG')
    screenshot(*sys.argv[1:])
