// A typed use of the package, checked by `tsc --noEmit -p tests/types` (scripts/test-rust-shell.sh)
// against js/index.d.ts. The @ts-expect-error lines fail the check if the types stop refusing them.
import { StableIdentity, preload, type IdentityEvent, type StartOptions, type Ticket } from "hsq-identity";

const seen: IdentityEvent[] = [];
const options: StartOptions = {
  relayUrl: "/hsq/v1/identity",
  assertion: async () => "h.p.s",
  portalId: 1234567,
  guard: true,
  chat: false,
  consent: "hubspot",
  storage: "session",
  timeoutMs: 3000,
  collectForms: false,
  onEvent: (e) => {
    seen.push(e);
    if (e.type === "identified") {
      const email: string = e.email;
      const cached: boolean = e.cached;
      void [email, cached];
    } else if (e.type === "relay-error") {
      const m: string = e.message;
      void m;
    } else if (e.type === "release") {
      const n: number | undefined = e.count;
      void n;
    }
  },
};

export async function page(): Promise<void> {
  await preload();
  const hs: StableIdentity = await StableIdentity.start(options);
  const t: Ticket | null = hs.identity;
  if (t && t.state === "confirmed") {
    const lease: string | null = t.leaseId;
    void lease;
  }
  hs.trackPageView();
  hs.trackPageView("/pricing");
  hs.track("signup", { plan: "pro", seats: 3, trial: true });
  const next: Ticket | null = await hs.refresh("h.p.s");
  void next;
  await hs.refresh();
  hs.reset();

  // @ts-expect-error relayUrl is required
  await StableIdentity.start({ assertion: "h.p.s" });
  // @ts-expect-error storage is one of three words
  await StableIdentity.start({ relayUrl: "/r", storage: "cookie" });
  // @ts-expect-error consent is "hubspot" or "granted"
  await StableIdentity.start({ relayUrl: "/r", consent: true });
  await StableIdentity.start({ relayUrl: "/r", collectForms: true });
  await StableIdentity.start({ relayUrl: "/r", collectForms: "form.newsletter, #contact-us" });
  // @ts-expect-error collectForms is a flag or a selector
  await StableIdentity.start({ relayUrl: "/r", collectForms: ["form.newsletter"] });
  // @ts-expect-error the constructor is private: start() is the way in
  new StableIdentity();
  // @ts-expect-error identity is read-only
  hs.identity = null;
  // @ts-expect-error track needs a name
  hs.track();
}
