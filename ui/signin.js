// The sign-in page: paste a token (or arrive through a `#token=…` link, which the
// router handles before any page is shown).

import { claimsOf, keepToken } from './auth.js';
import { h } from './dom.js';
import { frame, say } from './page.js';

// `signedIn` shows the page the token leads to: the router's, passed in so that
// this module does not import the router that imports it.
export function renderSignIn(message, signedIn) {
  document.title = 'headcount · sign in';
  const input = h('input', { type: 'password', id: 'token-input', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'eyJ…' });
  frame(
    [{ text: 'Sign in' }],
    h('h1', {}, 'Sign in'),
    message ? h('p', { class: 'notice', role: 'alert' }, message) : null,
    h(
      'form',
      {
        id: 'sign-in',
        class: 'sign-in',
        onsubmit: (ev) => {
          ev.preventDefault();
          const t = input.value.trim();
          if (!claimsOf(t)) {
            say('That is not a headcount token (a JWT: three parts separated by dots).', 'error');
            return;
          }
          keepToken(t);
          if (location.hash === '#/') signedIn();
          else location.hash = '#/';
        },
      },
      h('label', { for: 'token-input' }, 'Token'),
      input,
      h('button', { type: 'submit' }, 'Sign in'),
    ),
    h(
      'p',
      { class: 'hint' },
      'Paste an admin or tenant token. It stays in this tab (sessionStorage) and is sent only in the Authorization header. ',
      'An operator can print a link that signs in: ',
      h('code', {}, 'headcount token create --role tenant --tenant SLUG --ui'),
      '.',
    ),
  );
  input.focus();
}
