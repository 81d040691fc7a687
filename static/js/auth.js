// Login, sign-up, forgot-password and the two emailed-link pages (API.md §1).
import { api, clearErrors, forgetSession, formJSON, showErrors } from './api.js';

const page = document.body.dataset.page;
const form = document.getElementById('form');
const notice = document.getElementById('notice');
const params = new URLSearchParams(location.search);

function say(text, kind = '') {
  notice.className = `notice ${kind}`.trim();
  notice.textContent = text;
}

// Only a page of this site may follow the login (no open redirect, CWE-601): `next`
// is resolved as the browser itself will resolve it (which forgives tabs, newlines
// and backslashes) and followed only when it lands on our own origin.
function nextPath() {
  const next = params.get('next');
  if (!next) return '/';
  let target;
  try {
    target = new URL(next, location.origin);
  } catch {
    return '/';
  }
  if (target.origin !== location.origin) return '/';
  return target.pathname + target.search + target.hash;
}

async function submit(event, call) {
  event.preventDefault();
  clearErrors(form);
  const button = form.querySelector('[type="submit"]');
  button.disabled = true;
  try {
    await call(formJSON(form));
  } finally {
    button.disabled = false;
  }
}

const flows = {
  login() {
    form.addEventListener('submit', (event) => submit(event, async (body) => {
      const result = await api('POST', '/api/login/', { email: body.email, password: body.password });
      if (result.ok) {
        forgetSession(); // a new session: the next page learns it with one refresh
        location.assign(nextPath());
      }
      else showErrors(form, result.data);
    }));
  },
  register() {
    form.addEventListener('submit', (event) => submit(event, async (body) => {
      if (!body.privacy_policy) {
        showErrors(form, { privacy_policy: ['Please accept the privacy policy.'] });
        return;
      }
      const result = await api('POST', '/api/register/', body);
      if (result.ok) {
        form.hidden = true;
        say(`Almost there: we sent an activation link to ${result.data.user.email}. Open it to activate your account.`);
      } else {
        showErrors(form, result.data);
      }
    }));
  },
  forgot_password() {
    form.addEventListener('submit', (event) => submit(event, async (body) => {
      const result = await api('POST', '/api/password_reset/', { email: body.email });
      if (result.ok) {
        form.hidden = true;
        say(result.data.detail);
      } else {
        showErrors(form, result.data);
      }
    }));
  },
  async activate() {
    const uid = params.get('uid') || '', token = params.get('token') || '';
    if (!uid || !token) {
      say('This activation link is incomplete. Open the link from the email again.', 'bad');
      return;
    }
    const result = await api('GET', `/api/activate/${encodeURIComponent(uid)}/${encodeURIComponent(token)}/`);
    say(result.ok ? `${result.data.message} You can log in now.` : result.data.detail, result.ok ? '' : 'bad');
    const next = document.getElementById('next');
    next.hidden = false;
    next.focus();
  },
  confirm_password() {
    const uid = params.get('uid') || '', token = params.get('token') || '';
    if (!uid || !token) {
      form.hidden = true;
      say('This link is incomplete. Open the link from the email again.', 'bad');
      return;
    }
    form.addEventListener('submit', (event) => submit(event, async (body) => {
      const path = `/api/password_confirm/${encodeURIComponent(uid)}/${encodeURIComponent(token)}/`;
      const result = await api('POST', path, body);
      if (result.ok) {
        form.hidden = true;
        say(`${result.data.detail} You can log in with it now.`);
        document.getElementById('next').focus();
      } else {
        showErrors(form, result.data);
      }
    }));
  },
};

flows[page]();
