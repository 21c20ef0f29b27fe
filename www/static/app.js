// The demo app's client: single-page route changes, the email form, logout.
(function () {
  const titles = { "/app/": "Dashboard", "/app/reports": "Reports", "/app/billing": "Billing", "/app/settings": "Settings" };
  const ready = (fn) => (window.demo ? fn() : document.addEventListener("demo-ready", fn, { once: true }));
  const render = () => (document.getElementById("title").textContent = titles[location.pathname] || "Dashboard");
  render();
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a[data-spa]");
    if (!a) return;
    e.preventDefault();
    history.pushState({}, "", a.getAttribute("href"));
    render();
    ready(() => window.demo.view(location.pathname));
  });
  addEventListener("popstate", () => {
    render();
    ready(() => window.demo.view(location.pathname));
  });
  document.getElementById("email-form").addEventListener("submit", async (e) => {
    // data-post: the browser posts the form itself and the app redirects (a server-rendered page).
    if (e.target.hasAttribute("data-post")) return;
    e.preventDefault();
    const email = new FormData(e.target).get("email");
    const r = await fetch("/api/email", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email }) });
    const out = await r.json();
    if (!r.ok) return alert(out.message);
    document.getElementById("email").textContent = out.email;
    ready(() => window.demo.emailChanged(out.email));
  });
  document.getElementById("logout").addEventListener("click", () => ready(() => window.demo.logout()));
  const list = document.getElementById("events");
  document.addEventListener("hsq", (e) => {
    const li = document.createElement("li");
    const d = e.detail;
    li.textContent = `${new Date().toLocaleTimeString()} ${d.type}${d.email ? " " + d.email : ""}${d.count ? " (" + d.count + ")" : ""}${d.message ? ": " + d.message : ""}`;
    list.prepend(li);
  });
})();
