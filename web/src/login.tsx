// Login is the sign-in form: a name on a --dev server (DevLogin), otherwise
// a pasted token. It asks the server which, on opening.
import { Component, createRef, type VNode } from "preact";
import { Code, codeOf, messageOf, type Api } from "./api";

const userPattern = "[A-Za-z0-9_.\\-]{1,64}";

interface Props {
  api: Api;
  notice: string;
  /** devLogin signs in by name; it throws PERMISSION_DENIED without dev login. */
  devLogin: (user: string) => Promise<void>;
  /** tokenLogin signs in with a token. */
  tokenLogin: (token: string) => Promise<void>;
}

/** Login is the signed-out page. */
export class Login extends Component<Props> {
  private error = this.props.notice;
  private useToken = false;
  private busy = false;
  private name = createRef<HTMLInputElement>();
  private token = createRef<HTMLTextAreaElement>();

  componentDidMount(): void {
    // Ask the server whether it has dev login: an empty name is refused with
    // INVALID_ARGUMENT by a --dev server and PERMISSION_DENIED by the others.
    this.props.api.devLogin({ user: "" }).catch((err) => {
      if (codeOf(err) === Code.PermissionDenied) this.tokenMode();
    });
  }

  private tokenMode(): void {
    this.useToken = true;
    this.forceUpdate();
  }

  private submit = async (ev: Event): Promise<void> => {
    ev.preventDefault();
    this.error = "";
    this.busy = true;
    this.forceUpdate();
    try {
      if (this.useToken) await this.props.tokenLogin(this.token.current!.value.trim());
      else await this.devLogin(this.name.current!.value.trim());
    } catch (err) {
      this.error = messageOf(err);
    } finally {
      this.busy = false;
      // Signed in, this page is gone.
      if (this.token.current || this.name.current) this.forceUpdate();
    }
  };

  private async devLogin(user: string): Promise<void> {
    try {
      await this.props.devLogin(user);
    } catch (err) {
      if (codeOf(err) === Code.PermissionDenied) {
        this.tokenMode();
        throw new Error("This server has no dev login: paste a token instead.");
      }
      throw err;
    }
  }

  render(): VNode {
    const tok = this.useToken;
    return (
      <div class="login-page">
        <form class="login card" aria-labelledby="login-title" onSubmit={this.submit}>
          <h1 id="login-title">Sign in to Parley</h1>
          <div class="field" hidden={tok}>
            <label for="login-name">Your name</label>
            <input id="login-name" name="user" required={!tok} pattern={userPattern} maxLength={64} autocomplete="username" autoFocus placeholder="e.g. alice" data-testid="login-name" ref={this.name} />
            <p class="hint">Development server: any name signs you in.</p>
          </div>
          <div class="field" hidden={!tok}>
            <label for="login-token">Access token</label>
            <textarea id="login-token" name="token" rows={4} spellcheck={false} autocomplete="off" required={tok} data-testid="login-token" ref={this.token} />
            <p class="hint">
              This server has no open sign-in. Ask an administrator for a token (<code>parleyd token &lt;name&gt;</code>) and paste it here.
            </p>
          </div>
          <p class="form-error" role="alert" data-testid="login-error">
            {this.error}
          </p>
          <button type="submit" class="primary" data-testid="login-submit" disabled={this.busy}>
            Sign in
          </button>
        </form>
      </div>
    );
  }
}
