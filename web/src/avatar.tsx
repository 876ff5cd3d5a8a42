import type { VNode } from "preact";
import { avatarColor } from "./format";

/** Avatar is a coloured square with the user's initial. */
export function Avatar({ user, small = false }: { user: string; small?: boolean }): VNode {
  return (
    <span class={small ? "avatar small" : "avatar"} aria-hidden="true" style={{ backgroundColor: avatarColor(user) }}>
      {(user[0] ?? "?").toUpperCase()}
    </span>
  );
}
