package virt

import (
	"encoding/xml"
	"fmt"
	"sort"

	lv "libvirt.org/go/libvirt"
)

// MetadataNS is the XML namespace of virtpool's element in a domain's
// <metadata>. libvirt keeps it with the domain (and migrates it), so any
// tool can rebuild virtpool's picture from the hosts alone.
const (
	MetadataNS     = "https://virtpool.dev/xmlns/domain/1"
	metadataPrefix = "virtpool"
)

// metadata is virtpool's element:
//
//	<virtpool:domain xmlns:virtpool="https://virtpool.dev/xmlns/domain/1">
//	  <virtpool:label key="pool">web</virtpool:label>
//	  <virtpool:overlay>/images/web-1.qcow2</virtpool:overlay>
//	</virtpool:domain>
type metadata struct {
	XMLName xml.Name        `xml:"domain"`
	Labels  []metadataLabel `xml:"label"`
	// Overlay is the copy-on-write disk virtpool created (or reused), removed
	// on undefine unless told to keep it.
	Overlay string `xml:"overlay,omitempty"`
	// Migration notes the limits of the last migration out started here.
	Migration *migrationNote `xml:"migration,omitempty"`
}

type metadataLabel struct {
	Key   string `xml:"key,attr"`
	Value string `xml:",chardata"`
}

func newMetadata(labels map[string]string, overlay string) metadata {
	m := metadata{Overlay: overlay}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys) // same labels, same XML
	for _, k := range keys {
		m.Labels = append(m.Labels, metadataLabel{Key: k, Value: labels[k]})
	}
	return m
}

// marshal returns the element without a namespace: libvirt's SetMetadata
// adds virtpool's namespace and prefix itself.
func (m metadata) marshal() (string, error) {
	b, err := xml.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode virtpool metadata: %w", err)
	}
	return string(b), nil
}

func (m metadata) labels() map[string]string {
	if len(m.Labels) == 0 {
		return nil
	}
	out := make(map[string]string, len(m.Labels))
	for _, l := range m.Labels {
		out[l.Key] = l.Value
	}
	return out
}

// readMetadata returns a domain's virtpool metadata; a domain virtpool
// never labelled has none, which is not an error.
func readMetadata(dom *lv.Domain) (metadata, error) {
	var m metadata
	s, err := dom.GetMetadata(lv.DOMAIN_METADATA_ELEMENT, MetadataNS, lv.DOMAIN_AFFECT_CURRENT)
	if err != nil {
		if hasCode(err, lv.ERR_NO_DOMAIN_METADATA) {
			return m, nil
		}
		return m, err
	}
	if err := xml.Unmarshal([]byte(s), &m); err != nil {
		return m, fmt.Errorf("decode virtpool metadata: %w", err)
	}
	return m, nil
}

// writeMetadata stores m in the domain's live and persistent definitions.
func writeMetadata(dom *lv.Domain, m metadata) error {
	s, err := m.marshal()
	if err != nil {
		return err
	}
	flags := lv.DOMAIN_AFFECT_CONFIG
	if active, _ := dom.IsActive(); active {
		flags |= lv.DOMAIN_AFFECT_LIVE
	}
	return dom.SetMetadata(lv.DOMAIN_METADATA_ELEMENT, s, metadataPrefix, MetadataNS, flags)
}
