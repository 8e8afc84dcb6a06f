// Sign-in, navigation and the router: each view renders into <main> and returns
// a function that stops what it started (a live subscription).
import { clearToken, request, setToken, token } from "./api.js";
import { renderAnalytics } from "./analytics.js";
import { renderBilling } from "./billing.js";
import { renderCompose } from "./compose.js";
import { escape, html } from "./dom.js";

const VIEWER = `query Viewer {
  viewer { id name role }
  account { name timezone }
}`;

const VIEWS = { analytics: renderAnalytics, billing: renderBilling, compose: renderCompose };
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const menu = document.getElementById("menu");
let stopView = () => {};
let session = null;

function takeTokenFromAddress() {
  // `make run` prints /app/#token=…: read it once and drop it from the address bar
  // (and from the history) so it is not bookmarked or shared.
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return;
  setToken(decodeURIComponent(match[1]));
  history.replaceState(null, "", `${location.pathname}#/analytics`);
}

function showSignIn(problem = "", secret = "") {
  stopView();
  nav.hidden = true;
  menu.hidden = true;
  main.innerHTML = html`<form class="sign-in card" id="sign-in" novalidate>
      <h1>Sign in</h1>
      <div class="field">
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="off" required
          aria-describedby="sign-in-error">
      </div>
      <button type="submit">Sign in</button>
      <p class="error" id="sign-in-error" role="alert">${escape(problem)}</p>
    </form>`;
  const form = main.querySelector("form");
  form.token.value = secret;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const secret = form.token.value.trim();
    if (!secret) {
      form.querySelector(".error").textContent = "Paste an API token (tly_…).";
      return;
    }
    setToken(secret);
    start();
  });
  form.token.focus();
}

function signOut(problem = "") {
  clearToken();
  session = null;
  showSignIn(problem);
}

function route() {
  if (!session) return;
  let name = location.hash.replace(/^#\//, "") || "analytics";
  if (!(name in VIEWS) || (name === "billing" && session.viewer.role !== "ADMIN")) {
    name = "analytics";
  }
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  stopView();
  main.replaceChildren();
  stopView = VIEWS[name](main, { ...session, signOut }) ?? (() => {});
  if (window.matchMedia("(max-width: 640px)").matches) foldMenu(true);
}

function foldMenu(folded) {
  nav.classList.toggle("folded", folded);
  menu.setAttribute("aria-expanded", String(!folded));
}

async function start() {
  if (!token()) {
    showSignIn();
    return;
  }
  let data;
  try {
    data = await request(VIEWER);
  } catch (error) {
    if (error.code === "UNAUTHENTICATED") signOut("That token is not valid.");
    // Anything else (the server unreachable, busy or failing) says nothing of the token:
    // it is kept, and "Sign in" tries again.
    else showSignIn(error.message, token());
    return;
  }
  session = data;
  for (const link of nav.querySelectorAll("[data-role]")) {
    link.hidden = link.dataset.role !== data.viewer.role;
  }
  document.getElementById("who").textContent = `${data.viewer.name} · ${data.account.name}`;
  nav.hidden = false;
  menu.hidden = false;
  foldMenu(window.matchMedia("(max-width: 640px)").matches);
  route();
}

menu.addEventListener("click", () => foldMenu(!nav.classList.contains("folded")));
document.getElementById("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
takeTokenFromAddress();
start();
