package ship

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/virtpool/virtpool/checkpoint"
)

// Client is the agent's side of a host's helper: it has the host send an
// image to a peer, and asks what image of a guest the host holds. It
// carries control only; the images go host to host.
type Client struct {
	Base string      // the host's helper, https://HOST:PORT
	TLS  *tls.Config // presents the agent's client certificate (pki.Client.ClientConfig)

	once sync.Once
	http *http.Client
}

func (c *Client) client() *http.Client {
	c.once.Do(func() { c.http = httpClient(c.TLS) })
	return c.http
}

// Send has the helper send the image at path (on its host, under its
// directory) as guest name's newest image to the helper at to, and
// returns what that cost.
func (c *Client) Send(ctx context.Context, name, path, to string) (Sent, error) {
	b, err := json.Marshal(SendRequest{Name: name, Path: path, To: to})
	if err != nil {
		return Sent{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/v1/send", bytes.NewReader(b))
	if err != nil {
		return Sent{}, fmt.Errorf("send %s to %s through %s: %w", name, to, c.Base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client().Do(req)
	if err != nil {
		return Sent{}, fmt.Errorf("send %s to %s through %s: %w", name, to, c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Sent{}, fmt.Errorf("send %s to %s through %s: %w", name, to, c.Base, statusError(resp))
	}
	var sent Sent
	if err := json.NewDecoder(resp.Body).Decode(&sent); err != nil {
		return Sent{}, fmt.Errorf("send %s to %s through %s: its answer: %w", name, to, c.Base, err)
	}
	return sent, nil
}

// Manifest is the manifest of the last complete image of guest name that
// the helper holds as standby (nil: none).
func (c *Client) Manifest(ctx context.Context, name string) (checkpoint.Manifest, error) {
	return getManifest(ctx, c.client(), c.Base, name)
}

// List names the guests the helper holds images of.
func (c *Client) List(ctx context.Context) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/v1/images", nil)
	if err != nil {
		return nil, fmt.Errorf("list the images on %s: %w", c.Base, err)
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("list the images on %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list the images on %s: %w", c.Base, statusError(resp))
	}
	var names []string
	if err := json.NewDecoder(resp.Body).Decode(&names); err != nil {
		return nil, fmt.Errorf("list the images on %s: its answer: %w", c.Base, err)
	}
	return names, nil
}

// Remove has the helper forget guest name: the image it keeps as its
// standby, and its last checkpoint of it.
func (c *Client) Remove(ctx context.Context, name string) (Removed, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.Base+"/v1/images/"+url.PathEscape(name), nil)
	if err != nil {
		return Removed{}, fmt.Errorf("remove the images of %s from %s: %w", name, c.Base, err)
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return Removed{}, fmt.Errorf("remove the images of %s from %s: %w", name, c.Base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Removed{}, fmt.Errorf("remove the images of %s from %s: %w", name, c.Base, statusError(resp))
	}
	var r Removed
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return Removed{}, fmt.Errorf("remove the images of %s from %s: its answer: %w", name, c.Base, err)
	}
	return r, nil
}
