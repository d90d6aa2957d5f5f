// DOM helpers: every element is built with DOM APIs and every string becomes a text
// node or an attribute value, never markup. User references, user agents and ips are
// the sites' data, so nothing the API returns is ever parsed as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.setAttribute('class', v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  return el;
}

export function h(tag, attrs, ...children) {
  return add(setAttrs(document.createElement(tag), attrs), children);
}

export function svg(tag, attrs, ...children) {
  return add(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

// Replaces an element's children; like replaceChildren, but skips empty values
// instead of writing "null" on the page.
export function fill(el, ...children) {
  el.replaceChildren();
  return add(el, children);
}

export const $ = (id) => document.getElementById(id);
