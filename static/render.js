// Answers as markdown, never as HTML: HTML in an answer is shown as text, and
// what markdown makes is sanitized before it reaches the page.

import { Marked } from './vendor/marked.esm.js';
import DOMPurify from './vendor/purify.es.mjs';

export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

const markdown = new Marked({
  gfm: true,
  // Raw HTML in the markdown becomes visible text.
  renderer: { html: (token) => escapeHtml(token.text) },
});

// Links open elsewhere, telling the target nothing.
DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && !node.getAttribute('href')?.startsWith('#')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
});

// `[^id]` cites the reference `id`: a link to its place in the list, numbered as
// the list numbers it. An id the turn has no reference for stays as written.
function linkCitations(text, citations, turnKey) {
  return text.replace(/\[\^([A-Za-z0-9_.:-]+)\]/g, (whole, id) => {
    const number = citations.get(id);
    return number ? `[[${number}]](#cite-${turnKey}-${number})` : whole;
  });
}

// The HTML of an answer's markdown `text`, safe to put into the page.
export function renderAnswer(text, citations = new Map(), turnKey = '') {
  const html = markdown.parse(linkCitations(text, citations, turnKey));
  return DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
}
