#!/usr/bin/env python3
"""Checks every relative link ](path) and ](path#anchor) in the repository's Markdown files: the file must exist and
the anchor must be a heading of it (GitHub's slugs). Usage: build/check-doc-links.py [repository root]. Exit 1 on a broken link."""
import os, re, sys, subprocess
root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
files = subprocess.run(['git','ls-files','-co','--exclude-standard','*.md'], cwd=root, capture_output=True, text=True).stdout.split()
def slug(h):
    h = h.strip().lower()
    h = re.sub(r'[^\w\- ]', '', h)   # GitHub: drop punctuation except - and _
    return h.replace(' ', '-')
def anchors(path):
    out=set(); code=False; seen={}
    for line in open(path, encoding='utf-8'):
        if line.startswith('```'): code = not code; continue
        if code: continue
        m = re.match(r'^(#{1,6}) (.*)', line)
        if m:
            s = slug(re.sub(r'`', '', m.group(2)))
            if s in seen: seen[s]+=1; s=f'{s}-{seen[s]}'
            else: seen[s]=0
            out.add(s)
    return out
bad = total = 0
for f in files:
    text = open(os.path.join(root,f), encoding='utf-8').read()
    text_nocode = re.sub(r'```.*?```', '', text, flags=re.S)
    for target in re.findall(r'\]\(([^)\s]+)\)', text_nocode):
        if re.match(r'^[a-z]+://', target) or target.startswith('mailto:'): continue
        total += 1
        path, _, anchor = target.partition('#')
        full = os.path.normpath(os.path.join(root, os.path.dirname(f), path)) if path else os.path.join(root, f)
        if not os.path.exists(full):
            bad += 1; print(f'{f}: {target}: no such file'); continue
        if anchor and full.endswith('.md') and anchor not in anchors(full):
            bad += 1; print(f'{f}: {target}: no heading #{anchor}')
print(f'{total} relative links, {bad} broken')
sys.exit(1 if bad else 0)
