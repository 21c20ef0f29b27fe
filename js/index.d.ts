// Types of the hsq-identity package, written by hand (wasm-bindgen types the class with JsValue;
// src/web/shell.rs skips its generated declarations). Checked by tsc against tests/types/usage.ts.

/** What the relay answers (DESIGN.md section 5). */
export interface Ticket {
  /** The app's stable user id (the assertion's `sub`). */
  id: string;
  contactId: string | null;
  /** The email the page may send: HubSpot holds it for this contact and it is leased to the page. */
  email: string | null;
  state: "confirmed" | "pending" | "conflict" | "unknown";
  leaseId: string | null;
  /** Seconds since the epoch (the relay's clock). */
  emailValidUntil: number | null;
  exp: number;
  rotateUtk: boolean;
  chat?: { email: string; token: string; exp: number };
  /** The relay's clock when it answered (seconds), when it said. */
  now?: number;
}

export type IdentityEvent =
  | { type: "identified"; state: "confirmed"; email: string; cached: boolean }
  | { type: "pending" | "conflict" | "unknown"; state: "pending" | "conflict" | "unknown" }
  | { type: "relay-error"; message: string }
  | { type: "guard"; email: string | null; sent: string | null }
  | { type: "hold" }
  | { type: "release"; count?: number }
  | { type: "lease-released" }
  | { type: "rotate-utk" }
  | { type: "consent"; analytics: boolean }
  | { type: "reset" };

export interface StartOptions {
  /** The relay's identity endpoint, e.g. "/hsq/v1/identity". Required. */
  relayUrl: string;
  /** The app's signed assertion, or a function returning one (called before each relay call).
   * Left out: read from `<meta name="hsq-assertion" content="...">`. */
  assertion?: string | (() => string | Promise<string>);
  /** Your HubSpot account id: the module loads HubSpot's tracker itself, after identify. */
  portalId?: string | number;
  /** Overrides the tracker script URL (tests, the simulator). */
  trackerUrl?: string;
  /** Rewrite other code's `_hsq.push(["identify", {email}])` to the safe identity. Default true. */
  guard?: boolean;
  /** Identify HubSpot's chat widget with confirmed emails. Default false. */
  chat?: boolean;
  /** "hubspot": wait for HubSpot's privacy-consent listener (default); "granted": don't wait. */
  consent?: "hubspot" | "granted";
  /** Where the ticket is cached between pages. Default "session". */
  storage?: "session" | "local" | "none";
  /** How long `start` and each relay call wait, in ms. Default 3000. */
  timeoutMs?: number;
  onEvent?: (event: IdentityEvent) => void;
  /** Which of the page's own `<form>`s HubSpot's collected forms may capture. Default false: every
   * form, and every one added later, is marked `data-hs-do-not-collect="true"` before the tracker
   * binds it, so an app form cannot rewrite the contact's email behind the relay. true: leave all
   * forms alone; a CSS selector: leave the forms it matches. Forms that already carry
   * `data-hs-do-not-collect` (any value) are left as they are. */
  collectForms?: boolean | string;
}

export declare class StableIdentity {
  private constructor();
  /** Rejects only for bad options, with a message naming the option. */
  static start(options: StartOptions): Promise<StableIdentity>;
  /** The current ticket (a copy), or null. */
  readonly identity: Ticket | null;
  /** `setPath(path)` (when given) then `trackPageView`, for single-page apps. */
  trackPageView(path?: string): void;
  /** `trackCustomBehavioralEvent({name, properties})`. */
  track(name: string, properties?: Record<string, string | number | boolean>): void;
  /** After the app changed the user's email, or a new login. */
  refresh(assertion?: string): Promise<Ticket | null>;
  /** Logout: forget the ticket, clear HubSpot's cookies and visitor, reset the chat. */
  reset(): void;
}

/** Fetches and compiles the wasm ahead of `start` (optional). */
export declare function preload(): Promise<unknown>;
