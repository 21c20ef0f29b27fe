// The live panel: what HubSpot (the simulator) holds for each of the app's users, refreshed every
// second, so the race and its cure show without reading logs.
(function () {
  const el = document.getElementById("panel");
  if (!el) return;
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  async function draw() {
    let r;
    try {
      r = await fetch("/api/report").then((x) => x.json());
    } catch (_) {
      return;
    }
    const section = (mode, title) => {
      const users = r.users.filter((u) => u.mode === mode);
      const dups = users.filter((u) => u.contacts.length > 1).length;
      const rows = users
        .map((u) => {
          const cs = u.contacts.length
            ? u.contacts.map((c) => `<span class="contact">#${esc(c.id)} ${esc(c.email || "(no email)")} · ${c.pageViews} views</span>`).join(" ")
            : '<span class="muted">no contact yet</span>';
          return `<tr class="${u.contacts.length > 1 ? "dup" : ""}"><td>${esc(u.sub)}</td><td>${esc(u.email)}</td><td>${cs}</td></tr>`;
        })
        .join("");
      return `<div class="box ${mode}"><h3>${title}: <span class="${dups ? "bad" : "good"}">${dups} user${dups === 1 ? "" : "s"} with duplicate contacts</span></h3>
        <table><tr><th>user</th><th>email in the app</th><th>HubSpot contacts</th></tr>${rows}</table></div>`;
    };
    const log = r.log
      .slice()
      .reverse()
      .map((l) => `<li>${new Date(l.at).toLocaleTimeString()} ${esc(l.sub)}: ${esc(l.call)} → <b class="${l.status >= 400 || !l.status ? "bad" : "good"}">${l.status || esc(l.error)}</b></li>`)
      .join("");
    el.innerHTML = `<h2>What HubSpot holds (live from the simulator)</h2><div class="cols">${section("naive", "Naive")}${section("hsq", "hsq-identity")}</div>
      <h3>The app's worker (sync calls)</h3><ul class="log">${log || '<li class="muted">no email changes yet</li>'}</ul>`;
  }
  draw();
  setInterval(draw, 1000);
})();
